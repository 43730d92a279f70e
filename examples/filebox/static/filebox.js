// Uploads with a progress bar: each form of class "upload" is sent by
// XMLHttpRequest, whose upload events say how many bytes have left. Without
// JavaScript the forms still work, with no progress shown.
//
// New files go with tus-js-client when the page has it (the form then has
// data-tus-endpoint): see sendResumable below.
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

// Resumable uploads, one file after another, each in chunks of
// data-chunk-size bytes (PATCH requests) so that an interruption costs one
// chunk at most. tus-js-client retries by itself after RETRY_DELAYS (ms; the
// count starts again once a chunk gets through); past them the page says what
// happened, and choosing the same file again resumes it: the client keeps each
// unfinished upload's URL in localStorage under the file's name, type, size
// and date, and asks the server (HEAD) how much of it is in.
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000];

function resumable(form) {
  return Boolean(form.dataset.tusEndpoint && window.tus && window.tus.isSupported);
}

// tus-js-client's own rule (its default onShouldRetry): not after a 4xx, which
// is the server refusing, except 409 (another offset) and 423 (locked).
function retriable(error) {
  const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
  const refused = status >= 400 && status < 500 && status !== 409 && status !== 423;
  return !refused && navigator.onLine;
}

// The server's sentence for a file it refused (a 4xx: a damaged image), or
// null for an interruption. Too large is said as the plain form says it.
function refusal(form, error) {
  const response = error.originalResponse;
  const status = response ? response.getStatus() : 0;
  if (status === 413) return form.dataset.tooLarge;
  if (status >= 400 && status < 500 && !retriable(error)) {
    return response.getBody() || `The server refused it (${status}).`;
  }
  return null;
}

function sendFile(form, file, report) {
  return new Promise((resolve, reject) => {
    const metadata = { filename: file.name };
    if (file.type) metadata.filetype = file.type;
    const upload = new window.tus.Upload(file, {
      endpoint: new URL(form.dataset.tusEndpoint, window.location.href).href,
      chunkSize: Number(form.dataset.chunkSize),
      retryDelays: RETRY_DELAYS,
      metadata,
      removeFingerprintOnSuccess: true,
      onProgress: (sent) => report(sent, ""),
      onShouldRetry: (error, attempt) => {
        const retry = retriable(error);
        if (retry) report(null, `Connection lost, trying again (${attempt + 1} of ${RETRY_DELAYS.length})…`);
        return retry;
      },
      onSuccess: () => resolve(),
      onError: reject,
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) {
        // The newest: an older one of the same file was given up on.
        previous.sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1));
        upload.resumeFromPreviousUpload(previous[0]);
        report(null, `Resuming ${file.name} where it stopped…`);
      }
      upload.start();
    }, reject);
  });
}

// After a refusal or an interruption: the list as the server has it now (the
// files stored before are in it), and what went wrong.
async function showOutcome(form, messages) {
  try {
    const answer = await fetch(form.dataset.index, { cache: "no-store" });
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const listing = page.getElementById("listing");
    if (listing) document.getElementById("listing").replaceWith(listing);
  } catch {
    // The server is gone: the message below says so already.
  }
  showError(messages.join(" "));
}

async function sendResumable(form, box, bar, label) {
  const files = Array.from(form.querySelector("input[type=file]").files);
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const messages = [];
  let done = 0;
  bar.max = Math.max(total, 1);
  for (const file of files) {
    let resuming = false;
    const report = (sent, note) => {
      if (note) {
        resuming = note.startsWith("Resuming");
        label.textContent = note;
        return;
      }
      bar.value = done + sent;
      const percent = Math.floor((100 * (done + sent)) / Math.max(total, 1));
      const what = `${humanSize(done + sent)} of ${humanSize(total)} (${percent}%)`;
      label.textContent = resuming ? `Resuming ${file.name}: ${what}` : what;
    };
    try {
      await sendFile(form, file, report);
    } catch (error) {
      const refused = refusal(form, error);
      if (refused === null) {
        const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
        const why = status ? `the server answered ${status}` : "the server cannot be reached";
        messages.push(
          `Upload of ${file.name} interrupted: ${why}. ` +
            "Choose the same file again to go on where it stopped.",
        );
        break;
      }
      messages.push(refused);
    }
    done += file.size;
  }
  if (!messages.length) {
    label.textContent = "Stored, updating the list…";
    window.location.assign(form.dataset.index);
    return;
  }
  box.hidden = true;
  await showOutcome(form, messages);
  form.reset();
  enableButtons(true);
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
  if (resumable(form)) {
    enableButtons(false);
    bar.value = 0;
    label.textContent = "Starting…";
    box.hidden = false;
    sendResumable(form, box, bar, label);
    return;
  }
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
