"""The experiment commands (``python -m experiments.<command>``) and their configs.

A command re-executes itself once on tcmalloc when the machine has it
(`dal_jax.training.host_memory`: XLA:CPU's large scratch buffers are then reused instead of
faulted in afresh on every call); ``DAL_JAX_SYSTEM_MALLOC=1`` keeps glibc's malloc.
"""

from dal_jax.training import host_memory

host_memory.apply_to_command()
