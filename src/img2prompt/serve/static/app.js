// The web page: send one image to /v1/predict, show the decoded prompt, its cosine and the nearest bank prompts.
"use strict";

const $ = (id) => document.getElementById(id);

function show(element, visible) { element.hidden = !visible; }

async function predict(file) {
  $("preview").src = URL.createObjectURL(file);
  show($("preview"), true);
  show($("error"), false);
  show($("answer"), false);
  $("status").textContent = `Reading ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  let body;
  try {
    const response = await fetch("/v1/predict?top_k=5", { method: "POST", body: form });
    body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  } catch (err) {
    $("status").textContent = "";
    $("error").textContent = err.message;
    show($("error"), true);
    return;
  }
  render(body);
}

function render(result) {
  $("prompt").textContent = result.prompt ? result.prompt.text : "(no prompt bank loaded: embedding only)";
  $("cosine").textContent = result.prompt ? result.prompt.cosine.toFixed(4) : "n/a";
  const list = $("nearest");
  list.replaceChildren(...result.nearest.map((n) => {
    const item = document.createElement("li");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = n.score.toFixed(4);
    item.append(document.createTextNode(n.prompt), score);
    return item;
  }));
  const t = result.timings;
  $("timings").textContent =
    `${t.total_ms.toFixed(0)} ms in all: image ${t.image_ms.toFixed(0)} ms, model ${t.embed_ms.toFixed(0)} ms ` +
    `(batch of ${t.batch_size}), prompt ${t.decode_ms.toFixed(0)} ms`;
  $("status").textContent = result.name;
  $("model").textContent = `model: ${result.model}`;
  show($("answer"), true);
}

async function copyPrompt() {
  const text = $("prompt").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API needs a secure context; fall back to selecting the text for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents($("prompt"));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    document.execCommand("copy");
  }
  $("copy").textContent = "Copied";
  setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    if (event.target.files.length) predict(event.target.files[0]);
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (event) => {
    if (event.dataTransfer.files.length) predict(event.dataTransfer.files[0]);
  });
  $("copy").addEventListener("click", copyPrompt);
}

document.addEventListener("DOMContentLoaded", setup);
