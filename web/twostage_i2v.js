// TwoStage I2V panels on the nodes: live prompt lint on Motion Prompt, the planned
// frame (and, after a run, the source with its crop/pad box) on Stage Bridge, what a
// GGUF file is on the two GGUF loaders, and the expert switch on Wan 2.2 Expert Split. All facts come from the package's
// own routes (nodes/routes.py) on this ComfyUI server; user text is set with
// textContent only.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const DEBOUNCE_MS = 350;
const THUMB_HEIGHT = 150;

const CSS = `
.twostage-panel { box-sizing: border-box; width: 100%; padding: 4px 6px; overflow: auto;
  font: 12px/1.35 sans-serif; color: var(--descrip-text, #aaa); background: var(--comfy-input-bg, #222);
  border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
.twostage-panel .ts-head { color: var(--input-text, #ddd); font-weight: 600; }
.twostage-panel .ts-warn { color: #f0b44c; }
.twostage-panel .ts-ok { color: #7fcf7f; }
.twostage-panel .ts-error { color: var(--error-text, #ff6b6b); }
.twostage-panel canvas { display: block; margin-top: 4px; max-width: 100%; }
`;

function injectStyle() {
  if (document.getElementById("twostage-i2v-style")) return;
  const style = document.createElement("style");
  style.id = "twostage-i2v-style";
  style.textContent = CSS;
  document.head.append(style);
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

async function getJSON(path, init) {
  const resp = await api.fetchApi(path, init);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${path}: HTTP ${resp.status}`);
  return body;
}

const widget = (node, name) => node.widgets?.find((w) => w.name === name);

// Calls fn whenever one of the named widgets changes (callback or typing).
function watchWidgets(node, names, fn) {
  for (const name of names) {
    const w = widget(node, name);
    if (!w) continue;
    const previous = w.callback;
    w.callback = function (...args) {
      const r = previous?.apply(this, args);
      fn();
      return r;
    };
    w.element?.addEventListener?.("input", fn);
  }
}

// A panel below the node's widgets: a DOM widget that is never saved or sent,
// so widgets_values and the API prompt stay exactly the node's own inputs.
function addPanel(node, name, minHeight = 40) {
  injectStyle();
  const el = document.createElement("div");
  el.className = `twostage-panel ${name.replace("_", "-")}`;
  let needed = minHeight;
  const w = node.addDOMWidget(name, "twostage_panel", el, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => needed,
  });
  w.serialize = false;
  w.serializeValue = () => undefined;
  // lines: [text, className?] pairs, one row each; extra: an element put below them.
  const show = (lines, extra = null) => {
    const rows = lines.map(([text, cls]) => {
      const row = document.createElement("div");
      if (cls) row.className = cls;
      row.textContent = text;
      return row;
    });
    el.replaceChildren(...rows, ...(extra ? [extra] : []));
    el.dataset.state = lines[0]?.[1] ?? "";
    fit();
    requestAnimationFrame(fit); // again once the rows are laid out at the panel's width
  };
  // Grow a new node to show every row. Layout heights are not affected by the canvas
  // zoom; a panel that is not laid out yet (offsetHeight 0) gets an estimate. A node
  // loaded from a workflow keeps its saved size (growing would cover its neighbours):
  // its panel scrolls instead.
  const fit = () => {
    if (node.twostageKeepSize) {
      needed = minHeight;
      node.setDirtyCanvas(true, true);
      return;
    }
    const chars = Math.max(20, (node.size[0] - 40) / 6.5);
    const estimate = (c) => (c.tagName === "CANVAS" ? c.height : 16 * Math.ceil((c.textContent.length + 1) / chars));
    const content = [...el.children].reduce((a, c) => a + (c.offsetHeight || estimate(c)) + 4, 0);
    needed = Math.max(minHeight, content + 16);
    const [, h] = node.computeSize();
    if (h > node.size[1]) node.setSize([node.size[0], h]);
    node.setDirtyCanvas(true, true);
  };
  return { el, widget: w, show };
}

// Chains a prototype method so the node type's own behaviour runs first.
function chain(proto, method, fn) {
  const previous = proto[method];
  proto[method] = function (...args) {
    const r = previous?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

// ------------------------------------------------------------ Motion Prompt: live lint

function setupMotionPrompt(node) {
  const panel = addPanel(node, "twostage_lint");
  let seq = 0;
  const run = async () => {
    const mode = widget(node, "lint")?.value;
    if (mode === "off") return panel.show([["lint: off", "ts-head"]]);
    const body = {
      text: widget(node, "motion")?.value ?? "",
      camera: widget(node, "camera")?.value,
      pace: widget(node, "pace")?.value,
    };
    const mine = ++seq;
    try {
      const res = await getJSON("/twostage_i2v/lint", { method: "POST", body: JSON.stringify(body) });
      if (mine !== seq) return; // a newer edit is on its way
      const ws = res.warnings;
      if (!ws.length) return panel.show([["lint: clean, no warnings", "ts-ok"]]);
      const strip = mode === "strip" ? " (strip removes the appearance words)" : "";
      panel.show([
        [`lint: ${ws.length} warning${ws.length === 1 ? "" : "s"}${strip}`, "ts-warn"],
        ...ws.map((w) => [`• ${w.category}: ${w.message}`, "ts-warn"]),
      ]);
    } catch (err) {
      if (mine === seq) panel.show([[`lint unavailable: ${err.message}`, "ts-error"]]);
    }
  };
  node.twostageLint = debounce(run, DEBOUNCE_MS);
  // After a run: the node's own report (exact token count, what strip removed).
  node.twostageShowRun = (output) => {
    const report = (output?.text ?? []).flatMap((t) => String(t).split("\n"));
    if (report.length) panel.show(report.map((t, i) => [t, i === 0 ? "ts-head" : ""]));
  };
  watchWidgets(node, ["motion", "camera", "pace", "lint"], node.twostageLint);
  node.twostageLint();
}

// ------------------------------------------------------------ GGUF loaders: file summary

const LOADERS = {
  TwoStageI2V_WanI2VLoaderGGUF: { widget: "unet_name", folder: "diffusion_models" },
  TwoStageI2V_TextEncoderGGUF: { widget: "clip_name", folder: "text_encoders" },
};

function formatCount(n) {
  for (const [div, unit] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) if (n >= div) return `${(n / div).toFixed(2)} ${unit}`;
  return String(n);
}

function formatBytes(n) {
  for (const [div, unit] of [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]]) if (n >= div) return `${(n / div).toFixed(2)} ${unit}`;
  return `${n} B`;
}

function summaryLines(s) {
  const total = Object.values(s.tensor_types).reduce((a, t) => a + t.bytes, 0) || 1;
  const mix = Object.entries(s.tensor_types)
    .map(([name, t]) => `${name} ${((100 * t.bytes) / total).toFixed(0)}%`)
    .join(", ");
  const kindCls = s.kind === "other" ? "ts-warn" : "ts-head";
  return [
    [`${s.kind}: ${s.description}`, kindCls],
    [`quant mix (by bytes): ${mix}`],
    [`${formatCount(s.parameters)} parameters · ${formatBytes(s.file_size)} · ${s.bits_per_weight} bits/weight`],
  ];
}

function setupLoader(node, spec) {
  const panel = addPanel(node, "twostage_gguf");
  let seq = 0;
  const run = async () => {
    const name = widget(node, spec.widget)?.value;
    if (!name) return panel.show([[`no .gguf file in models/${spec.folder}/`, "ts-warn"]]);
    const mine = ++seq;
    try {
      const q = new URLSearchParams({ folder: spec.folder, file: name });
      const s = await getJSON(`/twostage_i2v/inspect?${q}`);
      if (mine === seq) panel.show(summaryLines(s));
    } catch (err) {
      if (mine === seq) panel.show([[err.message, "ts-error"]]);
    }
  };
  node.twostageInspect = debounce(run, 50);
  watchWidgets(node, [spec.widget], node.twostageInspect);
  node.twostageInspect();
}

// ------------------------------------------------------------ Stage Bridge: plan and preview

const PLAN_WIDGETS = ["target", "width", "height", "orientation", "fit", "anchor", "pad_style", "pad_color", "resample",
  "length_from", "frames", "seconds", "fps"];

// The node's text (bridge.describe, from a run or from the plan route) below our own heading.
const describeRows = (text) =>
  String(text ?? "").split("\n").slice(1).filter(Boolean).map((t) => [t, t.startsWith("UPSCALED") ? "ts-warn" : ""]);

// The pixels that reached the bridge's image input: the source node's own preview
// (LoadImage) or that of a node fed by the same output (PreviewImage after VAEDecode).
function sourceImage(node) {
  const link = node.graph?.links?.get?.(node.inputs?.[0]?.link) ?? node.graph?.links?.[node.inputs?.[0]?.link];
  if (!link) return null;
  const origin = node.graph.getNodeById(link.origin_id);
  const candidates = [origin];
  for (const id of origin?.outputs?.[link.origin_slot]?.links ?? []) {
    const l = node.graph.links.get?.(id) ?? node.graph.links[id];
    if (l && l.target_id !== node.id) candidates.push(node.graph.getNodeById(l.target_id));
  }
  for (const n of candidates) {
    const img = n?.imgs?.[0];
    if (img?.complete && img.naturalWidth) return img;
  }
  return null;
}

// Draws the source (or a grey stand-in) with the crop box, or the output frame
// with the padded content box, into a canvas THUMB_HEIGHT px high.
function drawPlan(canvas, plan, img) {
  const [sw, sh] = plan.source;
  const pad = plan.fit === "pad";
  const [fw, fh] = pad ? [plan.width, plan.height] : [sw, sh];
  const k = THUMB_HEIGHT / fh;
  canvas.width = Math.max(1, Math.round(fw * k));
  canvas.height = THUMB_HEIGHT;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = pad ? "#111" : "#555";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const [x, y, w, h] = pad ? plan.content : plan.crop ?? [0, 0, sw, sh];
  if (pad) {
    if (img) ctx.drawImage(img, x * k, y * k, w * k, h * k);
  } else if (img) {
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "rgba(0,0,0,0.55)"; // dim what the crop cuts away
    ctx.fillRect(0, 0, canvas.width, y * k);
    ctx.fillRect(0, (y + h) * k, canvas.width, canvas.height - (y + h) * k);
    ctx.fillRect(0, y * k, x * k, h * k);
    ctx.fillRect((x + w) * k, y * k, canvas.width - (x + w) * k, h * k);
  }
  ctx.strokeStyle = plan.upscaled ? "#f0b44c" : "#4cc2ff";
  ctx.lineWidth = 2;
  ctx.strokeRect(x * k + 1, y * k + 1, Math.max(0, w * k - 2), Math.max(0, h * k - 2));
}

function setupBridge(node) {
  const panel = addPanel(node, "twostage_bridge");
  const canvas = document.createElement("canvas");
  canvas.className = "twostage-bridge-preview";
  let lastRun = null; // the plan of the last execution: its source size is the real one
  let seq = 0;

  // After a run, plans are made for the image that came in, and drawn on it.
  const render = (plan, heading, extra = []) => {
    const lines = [[heading, plan.upscaled ? "ts-warn" : "ts-head"], ...extra];
    if (plan.upscaled && !extra.some(([t]) => t.startsWith("UPSCALED"))) {
      lines.push([`UPSCALED x${plan.scale}: the Wan frame is larger than the source region`, "ts-warn"]);
    }
    if (lastRun) {
      const img = sourceImage(node);
      drawPlan(canvas, plan, img);
      canvas.dataset.source = img ? "image" : "outline";
    }
    panel.show(lines, lastRun ? canvas : null);
  };

  const run = async () => {
    const q = new URLSearchParams();
    for (const name of PLAN_WIDGETS) {
      const v = widget(node, name)?.value;
      if (v !== undefined) q.set(name, v);
    }
    if (lastRun) {
      q.set("w", lastRun.source[0]);
      q.set("h", lastRun.source[1]);
    }
    const mine = ++seq;
    try {
      const p = await getJSON(`/twostage_i2v/bridge_plan?${q}`);
      if (mine !== seq) return;
      const [sw, sh] = p.source;
      const src = p.source_assumed ? `if stage 1 gives ${sw}x${sh}` : `from the last ${sw}x${sh} image`;
      render(p, `planned: Wan frame ${p.width}x${p.height}, ${p.length} frames (${src})`, describeRows(p.text));
    } catch (err) {
      if (mine === seq) panel.show([[err.message, "ts-error"]]);
    }
  };

  node.twostagePlan = debounce(run, DEBOUNCE_MS);
  node.twostageShowRun = (output) => {
    const plan = output?.bridge_plan?.[0];
    if (!plan) return;
    seq++; // a plan still in flight was made for the assumed source, not this image
    lastRun = plan;
    node.twostageKeepSize = false; // the thumbnail is what a run is looked at for: make room
    render(plan, `ran: Wan frame ${plan.width}x${plan.height}, ${plan.length} frames from ${plan.source[0]}x${plan.source[1]}`,
      describeRows(output.text?.[0]));
  };
  watchWidgets(node, PLAN_WIDGETS, node.twostagePlan);
  node.twostagePlan();
}

// ------------------------------------------------------------ Wan 2.2 Expert Split: the switch after a run

// The switch comes from the MODEL's own schedule, which only exists when the graph runs:
// the node's report (twostage_i2v.sampling.expert_split) is shown after each run.
function setupExpertSplit(node) {
  const panel = addPanel(node, "twostage_split");
  panel.show([["switch step: computed from the model's schedule when the workflow runs", "ts-head"]]);
  node.twostageShowRun = (output) => {
    const rows = (output?.text ?? []).flatMap((t) => String(t).split("\n"));
    if (!rows.length) return;
    panel.show(rows.map((t, i) => [t, t.startsWith("WARNING") ? "ts-warn" : i === 0 ? "ts-head" : ""]));
  };
}

// ------------------------------------------------------------ registration

app.registerExtension({
  name: "TwoStageI2V.NodePanels",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const proto = nodeType.prototype;
    if (nodeData.name === "TwoStageI2V_MotionPrompt") {
      chain(proto, "onNodeCreated", function () { setupMotionPrompt(this); });
      chain(proto, "onConfigure", function () { this.twostageKeepSize = true; this.twostageLint?.(); });
      chain(proto, "onExecuted", function (output) { this.twostageShowRun?.(output); });
    } else if (nodeData.name in LOADERS) {
      const spec = LOADERS[nodeData.name];
      chain(proto, "onNodeCreated", function () { setupLoader(this, spec); });
      chain(proto, "onConfigure", function () { this.twostageKeepSize = true; this.twostageInspect?.(); });
    } else if (nodeData.name === "TwoStageI2V_WanExpertSplit") {
      chain(proto, "onNodeCreated", function () { setupExpertSplit(this); });
      chain(proto, "onConfigure", function () { this.twostageKeepSize = true; });
      chain(proto, "onExecuted", function (output) { this.twostageShowRun?.(output); });
    } else if (nodeData.name === "TwoStageI2V_StageBridge") {
      chain(proto, "onNodeCreated", function () { setupBridge(this); });
      chain(proto, "onConfigure", function () { this.twostageKeepSize = true; this.twostagePlan?.(); });
      chain(proto, "onExecuted", function (output) { this.twostageShowRun?.(output); });
    }
  },
});
