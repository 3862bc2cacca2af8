// Screening kiosk: the instant quality gate on the capture page (progressive enhancement;
// the server gates again on submit). No inline script: the CSP forbids it.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function checkOne(input) {
  const note = input.parentElement.querySelector(".gate");
  if (!note) { return; }
  note.className = "gate";
  if (!input.files.length) { note.textContent = ""; return; }
  note.textContent = "Checking the image…";
  const lines = [];
  let allGood = true;
  for (const file of input.files) {
    const body = new FormData();
    body.append("image", file, file.name);
    if (input.dataset.gate) { body.append("task", input.dataset.gate); }
    if (input.dataset.eye) { body.append("laterality", input.dataset.eye); }
    try {
      const response = await fetch("/api/check", {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken() },
      });
      const answer = await response.json();
      if (!response.ok) { allGood = false; lines.push(answer.message || "Could not check"); continue; }
      if (!answer.gradable) {
        allGood = false;
        for (const retake of answer.retakes) { lines.push(retake.line); }
      }
    } catch (error) {
      allGood = false;
      lines.push("Could not check the image now; it will be checked on sending.");
    }
  }
  note.textContent = allGood ? "Image looks good ✓" : lines.join(" · ");
  note.classList.add(allGood ? "ok" : "bad");
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
      form.elements.reason.value = "idle";
      form.submit();
    }, seconds * 1000);
  };
  for (const name of ["pointerdown", "keydown", "scroll", "touchstart"]) {
    document.addEventListener(name, reset, { passive: true });
  }
  reset();
}

document.addEventListener("DOMContentLoaded", function () {
  startIdleLogOff();
  for (const input of document.querySelectorAll("input[type=file][data-gate]")) {
    input.addEventListener("change", function () { checkOne(input); });
  }
});
