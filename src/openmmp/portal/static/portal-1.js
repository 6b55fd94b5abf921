// The portal's own script: file uploads with a progress bar. Everything else live is htmx.
"use strict";

// <form data-upload data-progress="bar-id" data-target="result-id" enctype="multipart/form-data">: the
// file goes up by XMLHttpRequest so <progress id="bar-id"> shows the bytes sent; the answer (a fragment)
// replaces the inside of #result-id, or the page follows its HX-Redirect.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-upload")) {
    return;
  }
  event.preventDefault();
  const bar = document.getElementById(form.dataset.progress);
  const target = document.getElementById(form.dataset.target);
  const button = form.querySelector("[type=submit]");
  const request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.setRequestHeader("HX-Request", "true");
  request.setRequestHeader("X-CSRF-Token", form.elements.namedItem("csrf").value);
  if (bar) {
    bar.hidden = false;
    bar.value = 0;
  }
  if (button) {
    button.disabled = true;
  }
  request.upload.addEventListener("progress", (progress) => {
    if (bar && progress.lengthComputable) {
      bar.max = progress.total;
      bar.value = progress.loaded;
      bar.textContent = Math.round((100 * progress.loaded) / progress.total) + " %";
    }
  });
  request.addEventListener("loadend", () => {
    if (button) {
      button.disabled = false;
    }
    const next = request.getResponseHeader("HX-Redirect");
    if (next) {
      window.location.assign(next);
      return;
    }
    if (target) {
      target.innerHTML = request.status ? request.responseText : "<p role='alert'>The upload failed: the server could not be reached.</p>";
      window.htmx.process(target);
    }
  });
  request.send(new FormData(form));
});
