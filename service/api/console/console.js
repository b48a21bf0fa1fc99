// The AgileGAN console: a plain ES module talking only to this origin's public HTTP API.
// The key lives in sessionStorage (this tab only), and goes in the Authorization header, never a URL.

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("agilegan-key") || "", role: null, styles: [], training: null, timers: {} };

// ---------------------------------------------------------------------------------------- API

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.key}` };
  const response = await fetch(path, { ...options, headers });
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    const body = type.includes("json") ? await response.json() : { code: "error", message: await response.text() };
    const error = new Error(body.message || response.statusText);
    error.code = body.code;
    error.body = body;
    error.status = response.status;
    throw error;
  }
  return type.includes("json") ? response.json() : response.blob();
}

function showError(element, error) {
  element.textContent = error ? `${error.message}${error.code ? ` (${error.code})` : ""}` : "";
}

// ----------------------------------------------------------------------------------- key, tabs

async function useKey(key) {
  state.key = key;
  try {
    const me = await api("/v1/whoami");
    sessionStorage.setItem("agilegan-key", key);
    state.role = me.role;
    $("who").textContent = `signed in: ${me.role} key ${me.key_id.slice(0, 8)}…`;
    for (const el of document.querySelectorAll(".operator-only")) el.hidden = me.role !== "operator" || el.classList.contains("panel");
    await loadStyles();
    await loadJobs();
  } catch (error) {
    state.role = null;
    sessionStorage.removeItem("agilegan-key");
    $("who").textContent = `key refused: ${error.message}`;
    for (const el of document.querySelectorAll(".operator-only")) el.hidden = true;
  }
}

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    const selected = tab.getAttribute("aria-controls") === name;
    tab.setAttribute("aria-selected", String(selected));
    $(tab.getAttribute("aria-controls")).hidden = !selected;
  }
  if (name === "jobs") loadJobs();
  if (name === "styles") loadStyles();
}

// ------------------------------------------------------------------------------ try a style

async function loadStyles() {
  const { styles } = await api("/v1/styles");
  state.styles = styles;
  const select = $("style-select");
  const chosen = select.value;
  const ready = styles.filter((s) => s.status === "ready");
  select.replaceChildren(...ready.map((s) => new Option(s.name === s.id ? s.id : `${s.name} (${s.id})`, s.id)));
  if (!ready.length) select.replaceChildren(new Option("no ready style yet", "", true, true));
  if (chosen && ready.some((s) => s.id === chosen)) select.value = chosen;
  describeStyle();
  renderStyleTable();
  try {
    const { directions } = await api("/v1/directions");
    renderEditSliders(directions.filter((d) => d.styles.includes(select.value)));
  } catch { /* directions are optional */ }
}

// One slider per direction of the style's direction sets (index 0 is the set's id, others `id:i`);
// a slider left at 0 sends nothing. The JSON field, when filled, is sent instead.
const MAX_SLIDERS_PER_SET = 8;

function renderEditSliders(usable) {
  const box = $("edit-sliders");
  box.replaceChildren();
  for (const set of usable) {
    const [low, high] = set.alpha_range;
    for (let i = 0; i < Math.min(set.count, MAX_SLIDERS_PER_SET); i++) {
      const key = i ? `${set.id}:${i}` : set.id;
      const row = document.createElement("div");
      row.className = "row edit-slider";
      const label = document.createElement("label");
      const input = document.createElement("input");
      const value = document.createElement("output");
      input.type = "range";
      input.id = `edit-${key.replace(":", "-")}`;
      Object.assign(input, { min: String(low), max: String(high), step: "0.1", value: "0" });
      input.dataset.edit = key;
      label.htmlFor = input.id;
      label.textContent = set.count > 1 ? `${set.name || set.id} #${i}` : (set.name || set.id);
      value.textContent = "0";
      input.addEventListener("input", () => { value.textContent = input.value; });
      row.append(label, input, value);
      box.append(row);
    }
  }
  $("edits-help").textContent = usable.length
    ? `latent edits: move a slider away from 0 (range ${usable[0].alpha_range.join(" … ")}); layers: the set's recommended ones`
    : "no latent directions for this style";
}

function editsField() {
  const text = $("edits").value.trim();
  if (text) return text;
  const chosen = {};
  for (const input of document.querySelectorAll("#edit-sliders input[data-edit]")) {
    if (Number(input.value) !== 0) chosen[input.dataset.edit] = Number(input.value);
  }
  return Object.keys(chosen).length ? JSON.stringify(chosen) : "";
}

async function describeStyle() {
  const style = state.styles.find((s) => s.id === $("style-select").value);
  for (const row of document.querySelectorAll(".controls")) row.hidden = !(style && style.controls);
  $("style-about").textContent = style ? `${style.description || ""} ${style.resolution ? `· ${style.resolution} px` : ""} · ${style.provenance?.license || ""}` : "";
  if (style && style.controls) $("structure").placeholder = `default ${style.controls.structure.default}, max ${style.controls.structure.max}`;
  const preview = $("style-preview");
  preview.hidden = true;
  if (style && style.preview) {  // only a style that has one: no 404 in the browser's console
    try { preview.src = URL.createObjectURL(await api(style.preview)); preview.hidden = false; } catch { /* gone meanwhile */ }
  }
}

async function stylize(event) {
  event.preventDefault();
  showError($("error-message"), null);
  $("result-image").hidden = true;
  $("download").hidden = true;
  $("faces-table").hidden = true;
  $("faces-overlay").hidden = true;
  const file = $("photo-input").files[0];
  if (!file) return showError($("error-message"), new Error("choose a photo first"));
  $("input-image").src = URL.createObjectURL(file);
  $("pair").hidden = false;
  const form = new FormData();
  form.append("image", file);
  form.append("style", $("style-select").value);
  for (const name of ["output", "size", "format", "faces"]) form.append(name, $(name).value);
  if ($("webhook").value.trim()) form.append("webhook", $("webhook").value.trim());
  if (!document.querySelector(".controls").hidden) {
    form.append("strength", $("strength").value);
    if ($("structure").value !== "") form.append("structure", $("structure").value);
  }
  const edits = editsField();
  if (edits) form.append("edits", edits);
  $("stylize-button").disabled = true;
  $("job-status").textContent = "uploading…";
  try {
    const job = await api("/v1/stylize", { method: "POST", body: form });
    remember(job.id);
    const done = await poll(job.id, (j) => { $("job-status").textContent = `${j.status}${j.stage ? ` · ${j.stage}` : ""} · ${Math.round(100 * j.progress)} %`; });
    if (done.status !== "succeeded") throw Object.assign(new Error(done.error?.message || done.status), { code: done.error?.code });
    const blob = await api(`/v1/jobs/${job.id}/result`);
    const url = URL.createObjectURL(blob);
    $("result-image").src = url;
    $("result-image").hidden = false;
    $("download").href = url;
    $("download").download = `${job.id}.${$("format").value}`;
    $("download").hidden = false;
    if (done.result?.faces) {
      renderFaces($("faces-table"), done.result.faces);
      await drawFaceBoxes($("faces-overlay"), $("result-image"), done.result.faces);
    }
    const t = done.result?.timings || {};
    $("job-status").textContent = `succeeded · ${Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(", ")}`;
  } catch (error) {
    $("job-status").textContent = "failed";
    showError($("error-message"), error);
  } finally {
    $("stylize-button").disabled = false;
  }
}

function renderFaces(table, faces) {
  table.querySelector("tbody").replaceChildren(...faces.map((face, i) => {
    const row = document.createElement("tr");
    const box = face.box.map((v) => Math.round(v)).join(", ");
    for (const text of [String(i + 1), box, face.status, face.branch || face.reason || "—"]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
  table.hidden = faces.length === 0;
}

async function drawFaceBoxes(svg, image, faces) {
  if (!image.complete) await new Promise((resolve) => { image.onload = resolve; });
  svg.setAttribute("viewBox", `0 0 ${image.naturalWidth} ${image.naturalHeight}`);
  svg.replaceChildren(...faces.map((face) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const [left, top, right, bottom] = face.box;
    Object.entries({ x: left, y: top, width: right - left, height: bottom - top }).forEach(([k, v]) => rect.setAttribute(k, v));
    rect.setAttribute("class", face.status);
    return rect;
  }));
  svg.hidden = false;
}

async function showJob(jobId) {
  const job = await api(`/v1/jobs/${jobId}`);
  $("job-detail-title").textContent = `job ${job.id.slice(0, 12)} · ${job.kind} · ${job.status}`;
  const hook = job.webhook;
  $("job-detail-webhook").textContent = hook ? `webhook ${hook.url} (${hook.events.join(", ")})` : "no webhook";
  $("deliveries-table").querySelector("tbody").replaceChildren(...(hook?.deliveries || []).map((d) => {
    const row = document.createElement("tr");
    for (const text of [d.event, String(d.attempt), d.status ?? "", d.outcome, d.seconds.toFixed(2), d.error || ""]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
  $("deliveries-table").hidden = !hook;
  renderFaces($("job-faces-table"), job.result?.faces || []);
  $("job-detail").hidden = false;
}

async function poll(jobId, onUpdate) {
  for (;;) {
    const job = await api(`/v1/jobs/${jobId}`);
    onUpdate(job);
    if (["succeeded", "failed", "canceled"].includes(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

function remember(jobId) {
  const mine = JSON.parse(sessionStorage.getItem("agilegan-jobs") || "[]");
  sessionStorage.setItem("agilegan-jobs", JSON.stringify([jobId, ...mine].slice(0, 50)));
}

// ------------------------------------------------------------------------------------- jobs

async function loadJobs() {
  if (!state.role) return;
  const jobs = await api("/v1/jobs?limit=50");
  $("jobs-body").replaceChildren(...jobs.map((job) => {
    const row = document.createElement("tr");
    const seconds = job.finished_at && job.started_at ? (job.finished_at - job.started_at).toFixed(1) : "";
    for (const text of [job.id.slice(0, 12), job.kind, job.status, job.stage || "", seconds]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const action = document.createElement("td");
    const details = document.createElement("button");
    details.type = "button";
    details.className = "secondary";
    details.textContent = "Details";
    details.setAttribute("aria-label", `details of job ${job.id}`);
    details.onclick = () => showJob(job.id);
    action.append(details);
    if (["queued", "running"].includes(job.status) && job.kind !== "train") {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "secondary";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `cancel job ${job.id}`);
      cancel.onclick = async () => { await api(`/v1/jobs/${job.id}/cancel`, { method: "POST" }); loadJobs(); };
      action.append(cancel);
    }
    row.append(action);
    return row;
  }));
}

// ----------------------------------------------------------------------------------- styles

function renderStyleTable() {
  if (state.role !== "operator") return;
  $("styles-body").replaceChildren(...state.styles.map((style) => {
    const row = document.createElement("tr");
    for (const text of [style.id, style.status, style.resolution || ""]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const open = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Open";
    button.setAttribute("aria-label", `open style ${style.id}`);
    button.onclick = () => watchStyle(style.id);
    open.append(button);
    row.append(open);
    return row;
  }));
}

async function train(event) {
  event.preventDefault();
  showError($("train-error"), null);
  const form = new FormData();
  form.append("name", $("style-name").value);
  for (const file of $("exemplar-input").files) form.append(file.name.toLowerCase().endsWith(".zip") ? "archive" : "files", file);
  if ($("labels").value.trim()) form.append("labels", $("labels").value.trim());
  if ($("train-config").value.trim()) form.append("config", $("train-config").value.trim());
  $("train-button").disabled = true;
  try {
    const created = await api("/v1/styles", { method: "POST", body: form });
    report(created.files);
    watchStyle(created.id);
  } catch (error) {
    if (error.body?.files) report(error.body.files);
    showError($("train-error"), error);
  } finally {
    $("train-button").disabled = false;
  }
}

function report(files) {
  const table = $("upload-report");
  table.hidden = false;
  table.querySelector("tbody").replaceChildren(...files.map((f) => {
    const row = document.createElement("tr");
    for (const text of [f.file, f.accepted ? "yes" : "no", f.accepted ? (f.label || "") : `${f.reason}: ${f.message || ""}`]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

function watchStyle(styleId) {
  clearTimeout(state.timers.style);
  state.training = { id: styleId, previewStep: null };
  $("training").hidden = false;
  $("training-title").textContent = `style ${styleId}`;
  const tick = async () => {
    try {
      const style = await api(`/v1/styles/${styleId}`);
      const t = style.training || {};
      const curve = t.curve || [];
      const eta = t.eta_s != null ? ` · ETA ${Math.round(t.eta_s)} s` : "";
      const step = t.max_steps ? ` · step ${t.step}/${t.max_steps}` : t.steps ? ` · ${t.steps} steps, best ${t.best_step}` : "";
      const stop = t.stop_reason ? ` · stopped: ${t.stop_reason}` : "";
      $("training-status").textContent = `${style.status}${t.stage ? ` · ${t.stage}` : ""}${step}${eta}${stop}`;
      drawChart(curve, t.losses);
      const previewStep = t.preview_step ?? (style.status === "ready" ? "final" : null);
      if (previewStep !== null && previewStep !== state.training.previewStep) {
        try {
          $("preview-image").src = URL.createObjectURL(await api(`/v1/styles/${styleId}/preview`));
          $("preview-image").hidden = false;
          state.training.previewStep = previewStep;
        } catch { /* not drawn yet */ }
      }
      $("cancel-style").hidden = !["pending", "training"].includes(style.status);
      $("retire-style").hidden = style.status !== "ready";
      if (["pending", "training"].includes(style.status) || state.training.previewStep === null) {
        state.timers.style = setTimeout(tick, 1000);
      } else {
        loadStyles();
      }
    } catch (error) {
      showError($("train-error"), error);
    }
  };
  tick();
}

function drawChart(curve) {
  const svg = $("training-chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (!curve.length) return;
  const w = 600, h = 220, pad = 30;
  const steps = curve.map((c) => c.step), scores = curve.map((c) => c.score);
  const x0 = Math.min(...steps), x1 = Math.max(...steps, x0 + 1);
  const y0 = Math.min(...scores, 0), y1 = Math.max(...scores, y0 + 1e-9);
  const x = (s) => pad + ((s - x0) / (x1 - x0)) * (w - 2 * pad);
  const y = (v) => h - pad - ((v - y0) / (y1 - y0)) * (h - 2 * pad);
  const series = [["score", scores, "#1b1b1f"], ...["style", "overfit", "consistency"].map((name, i) => [name, curve.map((c) => c.terms?.[name] ?? 0), ["#c62828", "#2e7d32", "#1f4fbf"][i]])];
  series.forEach(([name, values, colour], i) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", values.map((v, j) => `${x(steps[j])},${y(v)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colour);
    line.setAttribute("stroke-width", name === "score" ? "2.5" : "1.5");
    const title = document.createElementNS(ns, "title");
    title.textContent = name;
    line.append(title);
    svg.append(line);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(pad + i * 110));
    label.setAttribute("y", "16");
    label.setAttribute("fill", colour);
    label.setAttribute("font-size", "12");
    label.textContent = name;
    svg.append(label);
  });
  for (const [text, px, py] of [[`step ${x0}`, pad, h - 8], [`${x1}`, w - pad - 20, h - 8], [y1.toPrecision(3), 2, pad]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", String(px));
    t.setAttribute("y", String(py));
    t.setAttribute("font-size", "11");
    t.textContent = text;
    svg.append(t);
  }
}

// ----------------------------------------------------------------------------------- wiring

function wire() {
  $("key-form").addEventListener("submit", (event) => { event.preventDefault(); useKey($("api-key").value.trim()); });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => selectTab(tab.getAttribute("aria-controls")));
  $("stylize-form").addEventListener("submit", stylize);
  $("style-select").addEventListener("change", () => { describeStyle(); loadStyles(); });
  $("strength").addEventListener("input", () => { $("strength-value").textContent = $("strength").value; });
  $("faces").addEventListener("change", () => {  // a group photo comes back whole: the faces pasted back
    if ($("faces").value === "all") $("output").value = "full";
    $("output").disabled = $("faces").value === "all";
  });
  $("jobs-refresh").addEventListener("click", loadJobs);
  $("train-form").addEventListener("submit", train);
  $("cancel-style").addEventListener("click", async () => { await api(`/v1/styles/${state.training.id}`, { method: "DELETE" }); });
  $("retire-style").addEventListener("click", async () => { await api(`/v1/styles/${state.training.id}`, { method: "DELETE" }); loadStyles(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) $("photo-input").files = event.dataTransfer.files;
  });
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("photo-input").click(); } });
  if (state.key) { $("api-key").value = state.key; useKey(state.key); }
}

wire();
