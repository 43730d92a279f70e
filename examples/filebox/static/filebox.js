// Uploads with a progress bar: each form of class "upload" is sent by
// XMLHttpRequest, whose upload events say how many bytes have left. Without
// JavaScript the forms still work, with no progress shown.
//
// Errors come back as the page itself (status 4xx), with the message in
// #error: the script shows that message and the list of that page, which
// holds whatever the same upload did store. Events are handled on the document,
// so the rows of a list put in this way work as the first ones did.
"use strict";

function humanSize(bytes) {
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function showError(message) {
  const error = document.getElementById("error");
  error.textContent = message;
  error.hidden = false;
}

function enableButtons(enabled) {
  for (const button of document.querySelectorAll("button")) button.disabled = !enabled;
}

// The limit is the form's: the server says it in data-max-upload (bytes) and
// what to tell the user in data-too-large, so the check here cannot drift from
// the server's own.
function tooLarge(form) {
  let total = 0;
  for (const input of form.querySelectorAll("input[type=file]")) {
    for (const file of input.files) total += file.size;
  }
  return total > Number(form.dataset.maxUpload);
}

function failed(form, xhr) {
  const answer = new DOMParser().parseFromString(xhr.responseText, "text/html");
  const error = answer.getElementById("error");
  // A 413 without the page comes from a server in front of the app (waitress
  // past its own limit, a proxy): the form knows what to say.
  const message =
    (error && !error.hidden && error.textContent.trim()) ||
    (xhr.status === 413 && form.dataset.tooLarge);
  showError(message || `Upload failed: the server answered ${xhr.status} ${xhr.statusText}.`);
  const listing = answer.getElementById("listing");
  if (listing) document.getElementById("listing").replaceWith(listing);
}

function send(form) {
  document.getElementById("error").hidden = true;
  if (tooLarge(form)) {
    showError(form.dataset.tooLarge);
    form.reset();
    return;
  }
  const box = document.getElementById("progress");
  const bar = box.querySelector("progress");
  const label = box.querySelector(".label");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.action);
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      bar.max = event.total;
      bar.value = event.loaded;
      const percent = Math.floor((100 * event.loaded) / event.total);
      label.textContent = `${humanSize(event.loaded)} of ${humanSize(event.total)} (${percent}%)`;
    }
  });
  xhr.upload.addEventListener("load", () => {
    label.textContent = "Stored, updating the list…";
  });
  xhr.addEventListener("load", () => {
    if (xhr.status < 400) {
      window.location.assign(xhr.responseURL || "/");
      return;
    }
    box.hidden = true;
    failed(form, xhr);
    form.reset();
    enableButtons(true);
  });
  xhr.addEventListener("error", () => {
    box.hidden = true;
    // Also what a server that stops reading a too long request looks like.
    showError("Upload failed: the connection closed before the server answered. Try again.");
    enableButtons(true);
  });
  enableButtons(false);
  bar.value = 0;
  label.textContent = "Starting…";
  box.hidden = false;
  xhr.send(new FormData(form));
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  } else if (form.classList.contains("upload")) {
    event.preventDefault();
    send(form);
  }
});

// A replace form has no button: choosing the file sends it.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (input.matches("form.replace input[type=file]") && input.files.length) {
    input.form.requestSubmit();
  }
});
