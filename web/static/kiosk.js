// Screening kiosk: the instant quality gate on the capture page (progressive enhancement;
// the server gates again on submit). No inline script: the CSP forbids it.
"use strict";

// The page's words in the reader's language (web/script_words.py); English when a page has none.
let pageWords = null;
function word(key, english) {
  if (pageWords === null) {
    const meta = document.querySelector('meta[name="kiosk-words"]');
    try { pageWords = meta ? JSON.parse(meta.content) : {}; } catch (error) { pageWords = {}; }
  }
  return pageWords[key] || english;
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// Photos larger than this (longest side, pixels) are made smaller in the browser before they
// travel: the eye models read 256-512 px and the quality gate measures far below this size.
const MAX_PHOTO_SIDE = 2400;

async function downscaled(file) {
  if (!/^image\/(jpeg|png)$/.test(file.type) || !window.createImageBitmap) { return file; }
  let bitmap;
  try { bitmap = await createImageBitmap(file); } catch (error) { return file; }
  const scale = MAX_PHOTO_SIDE / Math.max(bitmap.width, bitmap.height);
  if (scale >= 1) { bitmap.close(); return file; }
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise(function (done) { canvas.toBlob(done, "image/jpeg", 0.92); });
  if (!blob) { return file; }
  return new File([blob], file.name.replace(/\.png$/i, ".jpg"), { type: "image/jpeg" });
}

async function shrinkPhotos(input) {
  if (input.dataset.gate !== "fundus-dr" || !window.DataTransfer) { return; }
  const moved = new DataTransfer();
  let changed = false;
  for (const file of input.files) {
    const small = await downscaled(file);
    changed = changed || small !== file;
    moved.items.add(small);
  }
  if (changed) { input.files = moved.files; }
}

function patientId() {
  const form = document.getElementById("capture-form");
  return form ? form.dataset.patient || "" : "";
}

async function checkOne(input) {
  const note = input.parentElement.querySelector(".gate");
  if (!note) { return; }
  delete input.dataset.handle;
  note.className = "gate";
  if (!input.files.length) { note.textContent = ""; return; }
  note.textContent = word("checking", "Checking the image…");
  await shrinkPhotos(input);
  const lines = [];
  const warnings = [];
  const handles = [];
  let allGood = true;
  for (const file of input.files) {
    const body = new FormData();
    body.append("image", file, file.name);
    if (input.dataset.gate) { body.append("task", input.dataset.gate); }
    if (input.dataset.eye) { body.append("laterality", input.dataset.eye); }
    if (patientId()) { body.append("patient_id", patientId()); }
    try {
      const response = await fetch("/api/check", {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken() },
      });
      const answer = await response.json();
      if (!response.ok) { allGood = false; lines.push(answer.words || answer.message || word("check_failed", "Could not check this image")); continue; }
      for (const line of answer.warnings || []) { warnings.push(line); }
      for (const handle of answer.handles || []) { handles.push(handle); }
      if (!answer.gradable) {
        allGood = false;
        for (const retake of answer.retakes) { lines.push(retake.line); }
      }
    } catch (error) {
      allGood = false;
      lines.push(word("could_not_check", "Could not check the image now; it will be checked on sending."));
    }
  }
  if (allGood && handles.length === input.files.length) { input.dataset.handle = handles.join(" "); }
  const passed = input.dataset.gate === "fundus-dr"
    ? word("photo_ok", "✓ The photo is clear enough to screen")
    : word("film_ok", "✓ The X-ray is clear enough to screen");
  const good = allGood ? passed : lines.join(" · ");
  note.textContent = warnings.length ? [good].concat(warnings).join(" · " + word("check_this", "Check:") + " ") : good;
  note.classList.add(!allGood ? "bad" : (warnings.length ? "warn" : "ok"));
}

// One screening per tap: the form is sent once (its token makes a resend harmless), the button
// is disabled, the upload shows its progress, and a photo the gate already checked is named by
// its handle instead of being sent again. An expired session keeps the photos on the page.
function captureData(form) {
  const data = new FormData(form);
  for (const input of form.querySelectorAll("input[type=file]")) {
    if (input.dataset.handle) {
      data.delete(input.name);
      for (const handle of input.dataset.handle.split(" ")) { data.append("checked_" + input.name, handle); }
    }
  }
  return data;
}

function sendCapture(form) {
  const button = form.querySelector("button[type=submit]");
  const bar = form.querySelector("progress.sending");
  const note = form.querySelector(".sending-note");
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  bar.hidden = false;
  note.textContent = word("sending", "Sending the images…");
  const request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.upload.onprogress = function (event) {
    if (event.lengthComputable) { bar.value = Math.round(100 * event.loaded / event.total); }
  };
  request.upload.onload = function () { bar.removeAttribute("value"); note.textContent = word("screening", "Screening… this takes a few seconds."); };
  request.onload = function () { captureAnswered(form, request); };
  request.onerror = function () {
    button.disabled = false; bar.hidden = true; form.removeAttribute("aria-busy");
    note.textContent = word("no_answer", "The kiosk did not answer. Your photos are still here: press the button again.");
  };
  request.send(captureData(form));
}

function captureAnswered(form, request) {
  const url = request.responseURL || "";
  const expired = url.indexOf("/login") >= 0 || (request.status === 400 && request.responseText.indexOf("csrf_failed") >= 0);
  if (expired) { askToLogIn(form); return; }
  if (/\/screenings\/\d+$/.test(url)) { window.location.assign(url); return; }
  // the capture page again, with what to retake, fix or confirm: shown in place of this one
  const answer = new DOMParser().parseFromString(request.responseText, "text/html");
  document.title = answer.title;
  document.body.replaceWith(document.adoptNode(answer.body));
  startPage();
}

function askToLogIn(form) {
  for (const input of form.querySelectorAll("input[type=file]")) { delete input.dataset.handle; }
  document.body.classList.add("relogin");
  let panel = document.getElementById("relogin");
  if (!panel) {
    panel = document.createElement("section");
    panel.id = "relogin";
    panel.className = "card narrow";
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-labelledby", "relogin-title");
    const title = document.createElement("h1");
    title.id = "relogin-title";
    title.textContent = word("relogin_title", "Log in again to send the photos");
    const why = document.createElement("p");
    why.textContent = word("relogin_why", "You were logged off. The photos you chose are kept on this page: log in and they are sent.");
    const user = labelled(word("user_name", "User name"), "text", "relogin-user");
    const pass = labelled(word("password", "Password"), "password", "relogin-password");
    const go = document.createElement("button");
    go.type = "button"; go.className = "big primary"; go.textContent = word("log_in_and_send", "Log in and send");
    const said = document.createElement("p");
    said.className = "flash error"; said.hidden = true;
    go.addEventListener("click", function () { logInAgain(form, panel, said); });
    panel.append(title, why, user, pass, said, go);
    document.body.appendChild(panel);
  }
  panel.querySelector("input").focus();
}

function labelled(text, type, id) {
  const label = document.createElement("label");
  label.textContent = text + " ";
  const input = document.createElement("input");
  input.type = type; input.id = id; input.autocomplete = type === "password" ? "current-password" : "username";
  label.appendChild(input);
  return label;
}

async function logInAgain(form, panel, said) {
  const page = await (await fetch("/login", { credentials: "same-origin" })).text();
  const token = (page.match(/name="csrf_token" value="([^"]+)"/) || [])[1] || "";
  const body = new URLSearchParams({ username: panel.querySelector("#relogin-user").value,
    password: panel.querySelector("#relogin-password").value, csrf_token: token, next: "" });
  const answer = await fetch("/login", { method: "POST", body: body, credentials: "same-origin" });
  if (answer.url.indexOf("/login") >= 0) { said.hidden = false; said.textContent = word("wrong_login", "User name or password is wrong."); return; }
  const fresh = await (await fetch(form.action, { credentials: "same-origin" })).text();
  const newToken = (fresh.match(/name="csrf-token" content="([^"]+)"/) || [])[1] || "";
  document.querySelector('meta[name="csrf-token"]').content = newToken;
  form.elements.csrf_token.value = newToken;
  panel.remove();
  document.body.classList.remove("relogin");
  sendCapture(form);
}

// The instant checks run one after another, and the form waits for the last one: each answer
// rewrites the session cookie, so a check still in flight when the form is sent (or two checks
// at once) could undo what the other's answer kept; and the form sends the photos as checked.
let checking = Promise.resolve();
function queueCheck(input) {
  checking = checking.then(function () { return checkOne(input); }).catch(function () {});
}

function startCapture() {
  const form = document.getElementById("capture-form");
  if (!form || !window.XMLHttpRequest) { return; }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) { return; }
    button.disabled = true;
    checking.then(function () { sendCapture(form); });
  });
}

function chosenPhotos() {
  const form = document.getElementById("capture-form");
  return form ? Array.from(form.querySelectorAll("input[type=file]")).some(function (i) { return i.files.length; }) : false;
}

// The result page's pictures: heat-map or original, zoom, and window/level for films.
function startViewers() {
  for (const figure of document.querySelectorAll("[data-viewer]")) {
    const picture = figure.querySelector("img");
    const tools = document.createElement("div");
    tools.className = "viewer-tools";
    if (picture.dataset.original && picture.dataset.heatmap) {
      const film = picture.dataset.film === "yes";
      const toOriginal = film ? word("show_film", "Show the X-ray") : word("show_original", "Show the original");
      const flip = document.createElement("button");
      flip.type = "button"; flip.textContent = toOriginal;
      flip.addEventListener("click", function () {
        const showingMap = picture.src.indexOf("heatmap") >= 0;
        picture.src = showingMap ? picture.dataset.original : picture.dataset.heatmap;
        flip.textContent = showingMap ? word("show_heatmap", "Show the heat-map") : toOriginal;
      });
      tools.appendChild(flip);
    }
    const filters = { zoom: 1, contrast: 100, brightness: 100 };
    const apply = function () {
      picture.style.transform = "scale(" + filters.zoom + ")";
      picture.style.filter = "contrast(" + filters.contrast + "%) brightness(" + filters.brightness + "%)";
    };
    tools.appendChild(slider(word("zoom", "Zoom"), 1, 4, 0.5, 1, function (v) { filters.zoom = v; apply(); }));
    if (picture.dataset.film === "yes") {
      tools.appendChild(slider(word("window", "Window (contrast)"), 50, 300, 10, 100, function (v) { filters.contrast = v; apply(); }));
      tools.appendChild(slider(word("level", "Level (brightness)"), 50, 200, 10, 100, function (v) { filters.brightness = v; apply(); }));
    }
    // zoom inside a frame of its own: a scaled picture never covers the tools above it
    const frame = document.createElement("div");
    frame.className = "viewer-frame";
    picture.replaceWith(frame);
    frame.appendChild(picture);
    figure.insertBefore(tools, frame);
  }
}

function slider(text, min, max, step, value, changed) {
  const label = document.createElement("label");
  label.textContent = text + " ";
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: min, max: max, step: step, value: value });
  input.addEventListener("input", function () { changed(Number(input.value)); });
  label.appendChild(input);
  return label;
}

// Inactivity log-off on the screen too: a page left open must not keep showing patient data.
function startIdleLogOff() {
  const seconds = Number(document.body.dataset.idleSeconds || 0);
  const form = document.querySelector("form.who");
  if (!seconds || !form) { return; }
  let timer = null;
  const reset = function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      const form = document.querySelector("form.who");  // the page may have been replaced
      if (!form) { return; }
      form.elements.reason.value = "idle";
      if (!chosenPhotos()) { form.submit(); return; }
      // photos chosen: log off without leaving the page, hide the patient, keep the photos
      fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .finally(function () { askToLogIn(document.getElementById("capture-form")); });
    }, seconds * 1000);
  };
  for (const name of ["pointerdown", "keydown", "scroll", "touchstart"]) {
    document.addEventListener(name, reset, { passive: true });
  }
  reset();
}

document.addEventListener("DOMContentLoaded", function () {
  startIdleLogOff();
  startPage();
});

function startPage() {
  startCapture();
  startViewers();
  for (const input of document.querySelectorAll("input[type=file][data-gate]")) {
    input.addEventListener("change", function () { queueCheck(input); });
  }
}
