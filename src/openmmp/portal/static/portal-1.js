// The portal's own script: file uploads with a progress bar. Everything else live is htmx.
"use strict";

function uploadErrors(body) {
  try {
    return JSON.parse(body).errors.map((error) => error.message).join("; ");
  } catch {
    return "the server refused it.";
  }
}

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
  const company = form.elements.namedItem("company");
  if (company) {
    request.setRequestHeader("X-Portal-Company", company.value);
  }
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
    if (!target) {
      return;
    }
    const json = (request.getResponseHeader("Content-Type") || "").includes("application/json");
    if (request.status && !json) {
      target.innerHTML = request.responseText;
      window.htmx.process(target);
      return;
    }
    // Refused before the portal saw it (the body's size or time limits answer in the API's JSON), or
    // no answer at all: say so in words.
    const alert = document.createElement("p");
    alert.className = "errors";
    alert.setAttribute("role", "alert");
    alert.textContent = "The upload failed: " + (json ? uploadErrors(request.responseText) : "the server could not be reached.");
    target.replaceChildren(alert);
  });
  request.send(new FormData(form));
});
