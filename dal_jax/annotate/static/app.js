// Grasp annotation page of dal_jax (plain JS + canvas, no build step).
//
// Grasps are kept as {p: {r, c, angle, opening, jaw}, corners: [[row, col] x 4]} in image
// pixels. The geometry mirrors dal_jax/grasp.py: angle = atan2(-(p1.row - p0.row),
// p1.col - p0.col), p0 -> p1 along the opening, p1 -> p2 along the jaw. Corners loaded from disk
// are kept as they are until the grasp is edited, so untouched labels round-trip exactly.
//
// Every change saves the whole grasp list of the sample (PUT api/samples/<i>/grasps) together
// with the revision it was based on; the server answers 409 when another tab saved first, and
// this page then shows the saved version (see dal_jax/annotate/queue.py for the rule).
"use strict";

const $ = (id) => document.getElementById(id);
const MOVE_THRESHOLD_PX = 4; // screen pixels before a press becomes a drag
const MIN_OPENING = 2; // image pixels; shorter drags are treated as clicks
const MIN_JAW = 1;
const COALESCE_MS = 800; // wheel/key jaw, rotate and nudge edits within this share one undo

const S = {
  queue: null, // GET api/queue
  index: -1,
  id: "",
  grasps: [],
  revision: 0,
  snapshot: "[]", // JSON of the grasps when the sample was opened (for Cancel)
  history: [], // undo stack of grasp lists
  lastEdit: { key: "", t: 0 },
  selected: -1,
  view: "rgb",
  jawPx: null, // jaw size for new grasps; null = half the opening
  drag: null,
  images: { rgb: null, depth: null },
  scale: 1,
  saving: null, // the promise of the running save loop
  dirty: false,
  busy: false,
  finished: false,
  messageTimer: 0,
};

// ------------------------------------------------------------------------------- geometry

function wrapAngle(a) {
  const p = Math.PI;
  return ((((a + p / 2) % p) + p) % p) - p / 2;
}

function rectParams(c) {
  const d01 = [c[1][0] - c[0][0], c[1][1] - c[0][1]];
  const d12 = [c[2][0] - c[1][0], c[2][1] - c[1][1]];
  return {
    r: (c[0][0] + c[1][0] + c[2][0] + c[3][0]) / 4,
    c: (c[0][1] + c[1][1] + c[2][1] + c[3][1]) / 4,
    angle: wrapAngle(Math.atan2(-d01[0], d01[1])),
    opening: Math.hypot(d01[0], d01[1]),
    jaw: Math.hypot(d12[0], d12[1]),
  };
}

function graspToRect(g) {
  const cos = Math.cos(g.angle);
  const sin = Math.sin(g.angle);
  const ho = [(-sin * g.opening) / 2, (cos * g.opening) / 2]; // along the opening
  const hj = [(cos * g.jaw) / 2, (sin * g.jaw) / 2]; // along the jaw
  return [
    [g.r - ho[0] - hj[0], g.c - ho[1] - hj[1]],
    [g.r + ho[0] - hj[0], g.c + ho[1] - hj[1]],
    [g.r + ho[0] + hj[0], g.c + ho[1] + hj[1]],
    [g.r - ho[0] + hj[0], g.c - ho[1] + hj[1]],
  ];
}

const makeGrasp = (p) => ({ p, corners: graspToRect(p) });
const fromCorners = (corners) => ({ p: rectParams(corners), corners });
const clone = (x) => JSON.parse(JSON.stringify(x));

function insidePolygon(corners, pt) {
  // Ray casting in (col, row); works for any simple quadrilateral.
  let inside = false;
  for (let i = 0, j = corners.length - 1; i < corners.length; j = i++) {
    const [ri, ci] = corners[i];
    const [rj, cj] = corners[j];
    if (ri > pt.r !== rj > pt.r && pt.c < ((cj - ci) * (pt.r - ri)) / (rj - ri) + ci) {
      inside = !inside;
    }
  }
  return inside;
}

function insideImage(corners) {
  const H = S.queue.height;
  const W = S.queue.width;
  return corners.every(([r, c]) => r >= 0 && r <= H && c >= 0 && c <= W);
}

// ------------------------------------------------------------------------------- server

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = {};
  try {
    data = await res.json();
  } catch (e) {
    data = { error: `HTTP ${res.status}` };
  }
  return { ok: res.ok, status: res.status, data };
}

function setStatus(text, state) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = state;
  el.classList.toggle("error", state === "error");
}

function showMessage(text) {
  const el = $("message");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(S.messageTimer);
  S.messageTimer = setTimeout(() => (el.hidden = true), 7000);
}

// Saves the current sample; calls while a save runs are coalesced into one more save of the
// latest state, so saves of one sample never overtake each other.
function save() {
  S.dirty = true;
  if (S.saving) return S.saving;
  S.saving = (async () => {
    try {
      while (S.dirty) {
        S.dirty = false;
        setStatus("saving…", "saving");
        const res = await api("PUT", `api/samples/${S.index}/grasps`, {
          rects: S.grasps.map((g) => g.corners),
          revision: S.revision,
        });
        if (res.ok) {
          S.revision = res.data.revision;
          setStatus(`saved (revision ${S.revision})`, "saved");
        } else if (res.status === 409) {
          S.grasps = res.data.rects.map(fromCorners);
          S.revision = res.data.revision;
          S.history = [];
          S.selected = -1;
          S.dirty = false;
          showMessage(
            "Another tab saved this sample first; this tab now shows the saved version. " +
              "Redo your last change if it is missing.",
          );
          setStatus(`saved elsewhere (revision ${S.revision})`, "saved");
          render();
        } else {
          setStatus(`not saved: ${res.data.error}`, "error");
          showMessage(`The server refused the labels: ${res.data.error}`);
        }
      }
    } catch (e) {
      setStatus("not saved: server unreachable", "error");
      showMessage("The server cannot be reached; edits since the last save may be lost.");
    } finally {
      S.saving = null;
    }
  })();
  return S.saving;
}

async function flush() {
  while (S.saving) await S.saving;
}

// ------------------------------------------------------------------------------- editing

function commit(grasps, selected) {
  S.history.push(S.grasps);
  S.lastEdit = { key: "", t: 0 };
  S.grasps = grasps;
  S.selected = selected === undefined ? -1 : selected;
  render();
  save();
}

// Changes the selected grasp's parameters; quick repeats of the same kind share one undo step.
function editSelected(fn, kind) {
  if (S.selected < 0 || S.finished) return;
  const g = makeGrasp(fn({ ...S.grasps[S.selected].p }));
  if (!insideImage(g.corners)) {
    showMessage("That would move the grasp outside the image.");
    return;
  }
  const now = performance.now();
  const key = `${kind}:${S.selected}`;
  if (S.lastEdit.key !== key || now - S.lastEdit.t > COALESCE_MS) S.history.push(S.grasps);
  S.lastEdit = { key, t: now };
  S.grasps = S.grasps.slice();
  S.grasps[S.selected] = g;
  render();
  save();
}

function clampJaw(j) {
  return Math.min(Math.max(j, MIN_JAW), Math.max(S.queue.height, S.queue.width));
}

function adjustJaw(factor) {
  const d = S.drag;
  if (d && d.mode === "draw" && d.active) {
    d.jaw = clampJaw(drawParams(d).jaw * factor);
    S.jawPx = d.jaw; // a size chosen while drawing sticks for the next grasps
  } else if (S.selected >= 0) {
    editSelected((p) => ({ ...p, jaw: clampJaw(p.jaw * factor) }), "jaw");
    return;
  } else {
    S.jawPx = clampJaw((S.jawPx ?? 20) * factor);
  }
  render();
}

function undo() {
  if (!S.history.length) {
    showMessage("Nothing to undo.");
    return;
  }
  S.grasps = S.history.pop();
  S.lastEdit = { key: "", t: 0 };
  if (S.selected >= S.grasps.length) S.selected = -1;
  render();
  save();
}

function deleteSelected() {
  if (S.selected < 0) {
    showMessage("Select a grasp first (click it).");
    return;
  }
  commit(S.grasps.filter((_, i) => i !== S.selected));
}

function cancelEdits() {
  if (JSON.stringify(S.grasps.map((g) => g.corners)) === S.snapshot) {
    showMessage("No edits to discard on this sample.");
    return;
  }
  commit(JSON.parse(S.snapshot).map(fromCorners));
  showMessage("Edits on this sample discarded (Undo brings them back).");
}

// ------------------------------------------------------------------------------- pointer

function toImage(e) {
  const box = $("canvas").getBoundingClientRect();
  return { r: (e.clientY - box.top) / S.scale, c: (e.clientX - box.left) / S.scale };
}

function drawParams(d) {
  const vr = d.cur.r - d.start.r;
  const vc = d.cur.c - d.start.c;
  const opening = 2 * Math.hypot(vr, vc);
  return {
    r: d.start.r,
    c: d.start.c,
    angle: wrapAngle(Math.atan2(-vr, vc)),
    opening,
    jaw: d.jaw ?? S.jawPx ?? Math.max(opening / 2, MIN_JAW),
  };
}

function moved(orig, d) {
  // Translate by the drag, clamped so the grasp stays inside the image.
  const rs = orig.corners.map((p) => p[0]);
  const cs = orig.corners.map((p) => p[1]);
  const dr = Math.min(Math.max(d.cur.r - d.start.r, -Math.min(...rs)), S.queue.height - Math.max(...rs));
  const dc = Math.min(Math.max(d.cur.c - d.start.c, -Math.min(...cs)), S.queue.width - Math.max(...cs));
  return makeGrasp({ ...orig.p, r: orig.p.r + dr, c: orig.p.c + dc });
}

function onPointerDown(e) {
  if (e.button !== 0 || S.finished || S.busy || !S.queue) return;
  const canvas = $("canvas");
  canvas.focus();
  canvas.setPointerCapture(e.pointerId);
  const pt = toImage(e);
  const sel = S.grasps[S.selected];
  S.drag = {
    mode: sel && insidePolygon(sel.corners, pt) ? "move" : "draw",
    start: pt,
    cur: pt,
    sx: e.clientX,
    sy: e.clientY,
    active: false,
    jaw: null,
    orig: sel ? clone(sel) : null,
    before: S.grasps,
  };
}

function onPointerMove(e) {
  const d = S.drag;
  if (!d) return;
  if (!d.active && Math.hypot(e.clientX - d.sx, e.clientY - d.sy) < MOVE_THRESHOLD_PX) return;
  d.active = true;
  d.cur = toImage(e);
  if (d.mode === "move") {
    S.grasps = d.before.slice();
    S.grasps[S.selected] = moved(d.orig, d);
  }
  render();
}

function onPointerUp(e) {
  const d = S.drag;
  if (!d) return;
  S.drag = null;
  if (!d.active) {
    clickSelect(d.start);
    return;
  }
  d.cur = toImage(e);
  if (d.mode === "move") {
    S.grasps = d.before; // commit() records the pre-move list for undo
    const g = moved(d.orig, d);
    const grasps = S.grasps.slice();
    grasps[S.selected] = g;
    commit(grasps, S.selected);
    return;
  }
  const p = drawParams(d);
  const g = makeGrasp(p);
  if (p.opening < MIN_OPENING) {
    render();
  } else if (!insideImage(g.corners)) {
    showMessage("A grasp must lie inside the image; draw it again a little smaller.");
    render();
  } else if (S.grasps.length >= S.queue.max_grasps) {
    showMessage(`At most ${S.queue.max_grasps} grasps per sample.`);
    render();
  } else {
    commit([...S.grasps, g], S.grasps.length);
  }
}

function onPointerCancel() {
  if (S.drag && S.drag.mode === "move") S.grasps = S.drag.before;
  S.drag = null;
  render();
}

function clickSelect(pt) {
  // Topmost (latest) first; clicking again on overlapping grasps cycles through them.
  const hits = [];
  for (let i = S.grasps.length - 1; i >= 0; i--) {
    if (insidePolygon(S.grasps[i].corners, pt)) hits.push(i);
  }
  const at = hits.indexOf(S.selected);
  select(hits.length ? hits[(at + 1) % hits.length] : -1);
}

function select(i) {
  S.selected = i;
  S.lastEdit = { key: "", t: 0 };
  render();
}

// ------------------------------------------------------------------------------- drawing

function layout() {
  if (!S.queue) return;
  const stage = $("stage");
  const canvas = $("canvas");
  const H = S.queue.height;
  const W = S.queue.width;
  const aw = stage.clientWidth - 24;
  const ah = stage.clientHeight - 24;
  S.scale = Math.max(0.25, Math.min(aw / W, ah / H, 4));
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${W * S.scale}px`;
  canvas.style.height = `${H * S.scale}px`;
  canvas.width = Math.round(W * S.scale * dpr);
  canvas.height = Math.round(H * S.scale * dpr);
  render();
}

function strokeQuad(ctx, c, colours, width) {
  // Edges p0p1 and p2p3 run along the opening, p1p2 and p3p0 are the jaws.
  for (let k = 0; k < 4; k++) {
    const a = c[k];
    const b = c[(k + 1) % 4];
    ctx.beginPath();
    ctx.moveTo(a[1], a[0]);
    ctx.lineTo(b[1], b[0]);
    ctx.strokeStyle = colours[k % 2];
    ctx.lineWidth = width;
    ctx.stroke();
  }
}

function render() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const k = (window.devicePixelRatio || 1) * S.scale;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!S.queue) return;
  ctx.setTransform(k, 0, 0, k, 0, 0);
  const img = currentImage();
  if (img) ctx.drawImage(img, 0, 0, S.queue.width, S.queue.height);
  const px = 1 / S.scale; // one screen pixel in image units
  S.grasps.forEach((g, i) => {
    const sel = i === S.selected;
    if (sel) strokeQuad(ctx, g.corners, ["#ffe14d", "#ffe14d"], 6 * px);
    strokeQuad(ctx, g.corners, ["#2b8cff", "#ff3b30"], (sel ? 2.5 : 2) * px);
    ctx.fillStyle = sel ? "#ffe14d" : "#ff3b30";
    ctx.beginPath();
    ctx.arc(g.p.c, g.p.r, 2.5 * px, 0, 2 * Math.PI);
    ctx.fill();
  });
  const d = S.drag;
  if (d && d.active && d.mode === "draw") {
    const p = drawParams(d);
    const c = graspToRect(p);
    const ok = insideImage(c) && p.opening >= MIN_OPENING;
    ctx.setLineDash([5 * px, 4 * px]);
    strokeQuad(ctx, c, ok ? ["#7fd1ff", "#ff8a80"] : ["#ff0000", "#ff0000"], 2 * px);
    ctx.beginPath();
    ctx.moveTo(d.start.c, d.start.r);
    ctx.lineTo(d.cur.c, d.cur.r);
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 1.5 * px;
    ctx.stroke();
    ctx.setLineDash([]);
  }
  updateSidebar();
}

function currentImage() {
  if (S.view === "depth" || !S.images.rgb) return S.images.depth;
  return S.images.rgb;
}

const deg = (a) => ((a * 180) / Math.PI).toFixed(0);

function updateSidebar() {
  $("count").textContent = String(S.grasps.length);
  const list = $("grasp-list");
  list.replaceChildren(
    ...S.grasps.map((g, i) => {
      const li = document.createElement("li");
      li.textContent = `${deg(g.p.angle)}°  open ${g.p.opening.toFixed(1)}  jaw ${g.p.jaw.toFixed(1)}`;
      li.classList.toggle("selected", i === S.selected);
      li.addEventListener("click", () => select(i));
      return li;
    }),
  );
  $("jaw-info").textContent =
    S.jawPx === null
      ? "Jaw of new grasps: auto (half the opening)"
      : `Jaw of new grasps: ${S.jawPx.toFixed(1)} px (0 = auto)`;
  const hasRgb = S.queue && S.queue.samples[S.index] && S.queue.samples[S.index].has_rgb;
  $("view").textContent = S.view === "depth" || !hasRgb ? "RGB" : "Depth";
  $("view").disabled = !hasRgb;
  for (const id of ["undo", "delete", "cancel", "finish", "prev", "next"]) {
    $(id).disabled = S.finished;
  }
}

// ------------------------------------------------------------------------------- samples

function imageUrl(i, kind) {
  return `api/samples/${i}/${kind}.png`;
}

function thumbUrl(i) {
  return imageUrl(i, S.queue.samples[i].has_rgb ? "rgb" : "depth");
}

function loadImage(url) {
  const img = new Image();
  img.src = url;
  return img.decode().then(() => img);
}

async function goTo(i) {
  if (!S.queue || S.busy || i < 0 || i >= S.queue.samples.length) return;
  S.busy = true;
  try {
    S.drag = null;
    await flush();
    const res = await api("GET", `api/samples/${i}`);
    if (!res.ok) throw new Error(res.data.error);
    const info = S.queue.samples[i];
    const [rgb, depth] = await Promise.all([
      info.has_rgb ? loadImage(imageUrl(i, "rgb")) : null,
      loadImage(imageUrl(i, "depth")),
    ]);
    if (S.index >= 0) S.queue.samples[S.index].grasps = S.grasps.length;
    S.index = i;
    S.id = res.data.id;
    S.grasps = res.data.rects.map(fromCorners);
    S.revision = res.data.revision;
    S.snapshot = JSON.stringify(res.data.rects);
    S.history = [];
    S.selected = -1;
    S.images = { rgb, depth };
    $("position").textContent = `${i + 1} of ${S.queue.samples.length}`;
    $("sample-id").textContent = S.id;
    setStatus(`saved (revision ${S.revision})`, "saved");
    updateNextThumb();
    render();
    api("PUT", "api/state", { current: i }); // resume here next time
  } catch (e) {
    setStatus(`cannot load sample ${i + 1}: ${e.message}`, "error");
  } finally {
    S.busy = false;
  }
}

function updateNextThumb() {
  const n = S.index + 1;
  const img = $("next-thumb");
  if (n < S.queue.samples.length) {
    img.hidden = false;
    img.src = thumbUrl(n);
    $("next-thumb-button").disabled = false;
    const s = S.queue.samples[n];
    $("next-caption").textContent = `${n + 1} of ${S.queue.samples.length}: ${s.id}`;
  } else {
    img.hidden = true;
    $("next-thumb-button").disabled = true;
    $("next-caption").textContent = "This is the last sample; press Finish when done.";
  }
}

// ------------------------------------------------------------------------------- dialogs

function openDialog(id) {
  for (const d of document.querySelectorAll(".overlay")) d.hidden = d.id !== id;
}

function closeDialogs() {
  for (const d of document.querySelectorAll(".overlay")) {
    if (d.id !== "done-dialog") d.hidden = true;
  }
}

const dialogOpen = () => [...document.querySelectorAll(".overlay")].some((d) => !d.hidden);

async function refreshQueue() {
  const res = await api("GET", "api/queue");
  if (res.ok) {
    // Keep this tab's view of the current sample, which may be ahead of the disk by a save.
    S.queue = res.data;
  }
  return res.ok;
}

async function openChoose() {
  await flush();
  await refreshQueue();
  const grid = $("choose-grid");
  grid.replaceChildren(
    ...S.queue.samples.map((s, i) => {
      const b = document.createElement("button");
      b.classList.toggle("current", i === S.index);
      const img = document.createElement("img");
      img.loading = "lazy";
      img.src = thumbUrl(i);
      img.alt = s.id;
      const cap = document.createElement("div");
      cap.textContent = `${i + 1}. ${s.id} (${s.grasps} grasps)`;
      b.append(img, cap);
      b.addEventListener("click", () => {
        closeDialogs();
        goTo(i);
      });
      return b;
    }),
  );
  openDialog("choose-dialog");
}

async function openFinish() {
  await flush();
  await refreshQueue();
  const n = S.queue.samples.length;
  const total = S.queue.samples.reduce((a, s) => a + s.grasps, 0);
  const empty = S.queue.samples.filter((s) => s.grasps === 0).length;
  $("finish-summary").textContent =
    `${total} grasps on ${n} samples are saved.` +
    (empty ? ` ${empty} sample(s) have no grasp yet (they count as "no good grasp").` : "");
  openDialog("finish-dialog");
}

async function finish() {
  await flush();
  const res = await api("POST", "api/finish", {});
  if (!res.ok) {
    setStatus(`finish failed: ${res.data.error}`, "error");
    closeDialogs();
    return;
  }
  S.finished = true;
  setStatus("round finished", "finished");
  openDialog("done-dialog");
  render();
}

// ------------------------------------------------------------------------------- keyboard

function onKey(e) {
  if (dialogOpen()) {
    if (e.key === "Escape") closeDialogs();
    return;
  }
  if (e.target instanceof HTMLInputElement || !S.queue || S.finished) return;
  const ctrl = e.ctrlKey || e.metaKey;
  const step = e.shiftKey ? 10 : 1;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  let handled = true;
  if (ctrl && key === "z") undo();
  else if (ctrl || e.altKey) handled = false;
  else if (key === "Delete" || key === "Backspace") deleteSelected();
  else if (key === "z") undo();
  else if (key === "Escape") {
    if (S.drag) onPointerCancel();
    else select(-1);
  } else if (key === "[" || key === "{") adjustJaw(e.shiftKey ? 1 / 1.25 : 1 / 1.05);
  else if (key === "]" || key === "}") adjustJaw(e.shiftKey ? 1.25 : 1.05);
  else if (key === "0" || key === ")") {
    S.jawPx = null;
    render();
  } else if (key === "q") editSelected((p) => ({ ...p, angle: wrapAngle(p.angle + (e.shiftKey ? 1 : 5) * Math.PI / 180) }), "rot");
  else if (key === "e") editSelected((p) => ({ ...p, angle: wrapAngle(p.angle - (e.shiftKey ? 1 : 5) * Math.PI / 180) }), "rot");
  else if (key === "ArrowUp" && S.selected >= 0) editSelected((p) => ({ ...p, r: p.r - step }), "nudge");
  else if (key === "ArrowDown" && S.selected >= 0) editSelected((p) => ({ ...p, r: p.r + step }), "nudge");
  else if (key === "ArrowLeft" && S.selected >= 0) editSelected((p) => ({ ...p, c: p.c - step }), "nudge");
  else if (key === "ArrowRight" && S.selected >= 0) editSelected((p) => ({ ...p, c: p.c + step }), "nudge");
  else if (key === "Tab" && document.activeElement === $("canvas") && S.grasps.length) {
    const n = S.grasps.length;
    select(S.selected < 0 ? (e.shiftKey ? n - 1 : 0) : (S.selected + (e.shiftKey ? n - 1 : 1)) % n);
  } else if (key === "d") toggleView();
  else if (key === "n" || key === "PageDown") goTo(S.index + 1);
  else if (key === "p" || key === "PageUp") goTo(S.index - 1);
  else if (key === "c") openChoose();
  else if (key === "h" || key === "?") openDialog("readme-dialog");
  else handled = false;
  if (handled) e.preventDefault();
}

function toggleView() {
  S.view = S.view === "rgb" ? "depth" : "rgb";
  render();
}

// ------------------------------------------------------------------------------- start

async function start() {
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerCancel);
  canvas.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      adjustJaw(e.deltaY < 0 ? 1.1 : 1 / 1.1);
    },
    { passive: false },
  );
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", layout);
  window.addEventListener("beforeunload", (e) => {
    if (S.saving) e.preventDefault(); // a save is still on its way
  });
  $("prev").onclick = () => goTo(S.index - 1);
  $("next").onclick = () => goTo(S.index + 1);
  $("next-thumb-button").onclick = () => goTo(S.index + 1);
  $("view").onclick = toggleView;
  $("undo").onclick = undo;
  $("delete").onclick = deleteSelected;
  $("cancel").onclick = cancelEdits;
  $("choosepic").onclick = openChoose;
  $("readme").onclick = () => openDialog("readme-dialog");
  $("readme-close").onclick = closeDialogs;
  $("choose-close").onclick = closeDialogs;
  $("finish").onclick = openFinish;
  $("finish-back").onclick = closeDialogs;
  $("finish-confirm").onclick = finish;

  if (!(await refreshQueue())) {
    setStatus("cannot load the queue", "error");
    return;
  }
  $("round").textContent = `— round ${S.queue.round}`;
  document.title = `Round ${S.queue.round} · grasp annotation`;
  layout();
  if (S.queue.finished) {
    showMessage("This round was already finished; changes are still saved.");
  }
  await goTo(S.queue.current);
  document.body.dataset.ready = "1"; // lets automated tests wait for the first sample
}

start();
