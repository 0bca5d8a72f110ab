// The web page: one image goes to /v1/predict, several to /v1/predict/batch, with the chosen search mode;
// each answer is a card (decoded prompt, its cosine, whether the search was capped, the nearest bank prompts).
"use strict";

const $ = (id) => document.getElementById(id);
const MODE_HINTS = { fast: "quick, a short search", best: "slower, a longer search for a closer prompt" };
const KEPT_RUNS = 8;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function chosenMode() {
  const checked = document.querySelector('input[name="mode"]:checked');
  return checked ? checked.value : null;
}

function showError(message) {
  $("status").textContent = "";
  $("error").textContent = message;
  $("error").hidden = false;
}

// files: File objects; truths: the prompt each example was drawn from (null for the user's own images).
async function predict(files, truths = []) {
  if (!files.length) return;
  $("error").hidden = true;
  const batch = files.length > 1;
  const form = new FormData();
  for (const file of files) form.append(batch ? "files" : "file", file, file.name);
  const query = new URLSearchParams();  // top_k: the server's default (serve.top_k)
  const mode = chosenMode();
  if (mode) query.set("mode", mode);
  $("status").textContent = batch ? `Reading ${files.length} images…` : `Reading ${files[0].name}…`;
  const started = performance.now();
  let body;
  try {
    const response = await fetch(`/v1/predict${batch ? "/batch" : ""}?${query}`, { method: "POST", body: form });
    body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  } catch (err) {
    showError(err.message);
    return;
  }
  const results = batch ? body.results : [body];
  showModel(body.model);
  addRun(results, files, truths, mode, performance.now() - started);
  $("status").textContent = batch ? `${results.length} images` : results[0].image;
}

function addRun(results, files, truths, mode, elapsedMs) {
  const run = element("section", "run");
  const what = results.length > 1 ? `Batch of ${results.length} images` : results[0].image;
  const used = results[0].mode || mode;
  run.append(element("h2", "run-title", `${what} · mode ${used || "default"} · ${elapsedMs.toFixed(0)} ms`));
  results.forEach((result, i) => run.append(card(result, files[i], truths[i], results.length === 1)));
  const runs = $("runs");
  runs.prepend(run);
  while (runs.children.length > KEPT_RUNS) runs.lastChild.remove();
}

function card(result, file, truth, single) {
  const article = element("article", single ? "card single" : "card");
  const thumb = element("img", "thumb");
  thumb.src = URL.createObjectURL(file);
  thumb.alt = result.image;
  const body = element("div", "card-body");
  body.append(element("h3", "name", result.image));
  if (result.prompt !== null) {
    const row = element("div", "prompt-row");
    const text = element("p", "prompt", result.prompt);
    const copy = element("button", "copy", "Copy");
    copy.type = "button";
    copy.addEventListener("click", () => copyText(text, copy));
    row.append(text, copy);
    const score = element("p", "score-line");
    const cosine = element("span", "cosine", result.cosine.toFixed(4));
    score.append(element("span", "label", "cosine "), cosine,
                 element("span", "muted", " of this prompt's embedding to the image's predicted embedding"));
    if (result.capped) {
      score.append(element("span", "capped", "capped"));
      score.lastChild.title = "the server's time limit cut the search short: a longer search may find a closer prompt";
    }
    body.append(row, score);
  } else {
    body.append(element("p", "prompt muted", "(no prompt bank loaded: embedding only)"));
  }
  if (truth) body.append(element("p", "truth", `Drawn from: ${truth}`));
  if (result.nearest.length) {
    const details = element("details", "nearest-box");
    details.open = single;
    details.append(element("summary", "", "Nearest prompts in the bank"));
    const list = element("ol", "nearest");
    for (const n of result.nearest) {
      const item = element("li", "", n.prompt);
      item.append(element("span", "score", n.cosine.toFixed(4)));
      list.append(item);
    }
    details.append(list);
    body.append(details);
  }
  const t = result.timings;
  body.append(element("p", "timings muted",
    `${t.total_ms.toFixed(0)} ms: image ${t.image_ms.toFixed(0)}, model ${t.embed_ms.toFixed(0)} ` +
    `(pass of ${t.batch_size}), prompt ${t.decode_ms.toFixed(0)}`));
  article.append(thumb, body);
  return article;
}

async function copyText(source, button) {
  try {
    await navigator.clipboard.writeText(source.textContent);
  } catch {
    // The Clipboard API needs a secure context; fall back to selecting the text for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(source);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function showModel(name) {
  $("model-name").textContent = name;
  $("footer-model").textContent = name;
}

async function loadServer() {
  const health = await (await fetch("/healthz")).json();
  showModel(health.model);
  if (health.bank_size) $("served").append(` · a bank of ${health.bank_size.toLocaleString()} prompts`);
  if (health.warning) {  // e.g. the quickstart's models, which learned only synthetic scenes
    $("model-warning").textContent = health.warning;
    $("model-warning").hidden = false;
  }
  const options = $("mode-options");
  for (const mode of health.modes) {
    const label = element("label", "mode");
    const input = element("input");
    Object.assign(input, { type: "radio", name: "mode", value: mode, checked: mode === health.mode });
    label.append(input, element("span", "mode-name", mode));
    if (MODE_HINTS[mode]) label.append(element("span", "muted small", MODE_HINTS[mode]));
    options.append(label);
  }
  $("modes").hidden = !health.bank_size;  // without a bank nothing is decoded, so no mode to choose
}

async function loadExamples() {
  const examples = await (await fetch("/static/examples/examples.json")).json();
  for (const example of examples) {
    const button = element("button", "example");
    button.type = "button";
    button.title = example.prompt;
    button.dataset.file = example.file;
    const image = element("img");
    image.src = `/static/examples/${example.file}`;
    image.alt = example.prompt;
    button.append(image);
    button.addEventListener("click", async () => {
      const blob = await (await fetch(image.src)).blob();
      predict([new File([blob], example.file, { type: blob.type })], [example.prompt]);
    });
    $("examples").append(button);
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    predict([...event.target.files]);
    event.target.value = "";  // choosing the same files again is a new request
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (event) => predict([...event.dataTransfer.files]));
  loadServer().catch((err) => showError(`cannot reach the server: ${err.message}`));
  loadExamples().catch(() => { document.querySelector(".examples").hidden = true; });
}

document.addEventListener("DOMContentLoaded", setup);
