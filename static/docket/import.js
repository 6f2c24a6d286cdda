// The document import form: sends the file with a progress bar, then opens the import's result page.
// Without this script the form posts normally and the server redirects to the same page.
(function () {
  "use strict";
  const form = document.getElementById("import-form");
  if (!form) return;
  const state = document.getElementById("upload-state");
  const bar = document.getElementById("upload-progress");
  const text = document.getElementById("upload-text");
  const problem = document.getElementById("upload-error");
  const submit = document.getElementById("import-submit");

  function showErrors(errors) {
    form.querySelectorAll("ul.errorlist.from-script").forEach((list) => list.remove());
    const messages = [];
    for (const [field, list] of Object.entries(errors)) {
      const words = list.map((e) => e.message).join(" ");
      const input = form.querySelector(`[name="${field}"]`);
      if (input) {
        const ul = document.createElement("ul");
        ul.className = "errorlist from-script";
        ul.innerHTML = "<li></li>";
        ul.firstChild.textContent = words;
        input.before(ul);
        const details = input.closest("details");
        if (details) details.open = true;
      } else {
        messages.push(words);
      }
    }
    problem.textContent = messages.join(" ");
    problem.hidden = messages.length === 0;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.setRequestHeader("Accept", "application/json");
    state.hidden = false;
    problem.hidden = true;
    submit.disabled = true;
    bar.value = 0;
    text.textContent = "Uploading…";
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.round((100 * e.loaded) / e.total);
      bar.value = percent;
      text.textContent = `Uploading… ${percent}% of ${(e.total / 1024).toFixed(0)} KB`;
    });
    request.addEventListener("load", () => {
      let body = {};
      try {
        body = JSON.parse(request.responseText);
      } catch (error) {
        body = { errors: { __all__: [{ message: `The server answered ${request.status}; the file was not imported.` }] } };
      }
      if (request.status === 200 && body.redirect) {
        bar.value = 100;
        text.textContent = "Uploaded; opening the import…";
        window.location.assign(body.redirect);
        return;
      }
      state.hidden = true;
      submit.disabled = false;
      showErrors(body.errors || {});
    });
    request.addEventListener("error", () => {
      state.hidden = true;
      submit.disabled = false;
      problem.textContent = "The upload did not reach the server (network). Nothing was imported; try again.";
      problem.hidden = false;
    });
    request.send(new FormData(form));
  });
})();
