"""The experiment commands (``python -m experiments.<command>``) and their configs.

A command re-executes itself once on tcmalloc when the machine has it
(`dal_jax.training.host_memory`: XLA:CPU's large scratch buffers are then reused instead of
faulted in afresh on every call); ``DAL_JAX_SYSTEM_MALLOC=1`` keeps glibc's malloc. It keeps
its compiled programs on disk for the next command that needs them
(`dal_jax.training.compile_cache`; ``DAL_JAX_COMPILE_CACHE=off`` turns that off).
"""

from dal_jax.training import compile_cache, host_memory

host_memory.apply_to_command()
compile_cache.apply_to_command()
