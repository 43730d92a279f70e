// Uploads with a progress bar: each form of class "upload" is sent by
// XMLHttpRequest, whose upload events say how many bytes have left. Without
// JavaScript the forms still work, with no progress shown.
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

function send(form) {
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
    } else {
      box.hidden = true;
      showError(`Upload failed. ${xhr.responseText || `${xhr.status} ${xhr.statusText}`}`);
      for (const button of document.querySelectorAll("button")) button.disabled = false;
    }
  });
  xhr.addEventListener("error", () => {
    box.hidden = true;
    showError("Upload failed: the server could not be reached.");
  });
  document.getElementById("error").hidden = true;
  for (const button of document.querySelectorAll("button")) button.disabled = true;
  bar.value = 0;
  label.textContent = "Starting…";
  box.hidden = false;
  xhr.send(new FormData(form));
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.upload")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(form);
    });
  }
  // A replace form has no button: choosing the file sends it.
  for (const input of document.querySelectorAll("form.replace input[type=file]")) {
    input.addEventListener("change", () => {
      if (input.files.length) input.form.requestSubmit();
    });
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
