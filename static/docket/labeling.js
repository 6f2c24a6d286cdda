// The labeling page: keyboard first, mouse everywhere, the next document prefetched, no answer lost.
// Talks to the JSON calls in annotation/views.py with the session cookie and the CSRF header.
(function () {
  "use strict";

  const boot = JSON.parse(document.getElementById("labeling-bootstrap").textContent);
  const workspace = document.getElementById("workspace");
  if (!workspace) return; // nothing imported yet: the page says so itself

  const csrfToken = document.querySelector("meta[name=csrf-token]").content;
  const $ = (id) => document.getElementById(id);
  const labelsByKey = new Map(boot.labels.map((label) => [label.key, label]));
  const labelsByShortcut = new Map(boot.labels.filter((l) => l.shortcut).map((l) => [l.shortcut, l]));
  const buttons = new Map([...document.querySelectorAll(".label-choice")].map((b) => [b.dataset.key, b]));
  const RETRY_DELAYS_MS = [400, 1500, 4000, 10000];
  const HELD_POLL_MS = 30000;
  // Nobody reads, let alone judges, a document faster than this after it appears: an Enter, click or S that
  // comes sooner was meant for the document before it (a double click, a key pressed twice or held down).
  const REACTION_MS = 250;
  // How often the page asks which model serves, so a promotion or rollback shows within two seconds.
  const MODEL_POLL_MS = 1000;

  const state = {
    mode: "loading", // "queue": a new document; "edit": an earlier one; "empty": nothing to do
    current: null, // the queue document (kept while an earlier one is edited)
    currentSelection: null,
    editing: null,
    standaloneEdit: Boolean(boot.editDocument),
    upcoming: null, // promise of the prefetched next document
    selected: new Set(),
    paintedAt: null, // when the document on screen was first painted (performance.now() time)
    readyAt: Infinity, // input events before this time were not meant for the document on screen
    shownSeq: 0,
    selectionTouched: false, // the reviewer changed the pre-selected labels of the document on screen
    modelNumber: boot.model ? boot.model.number : null,
    failures: new Map(), // document id -> its line in the red "Not saved" list
    submissionId: null,
    history: boot.recent.slice(), // documents this reviewer labeled, oldest first
    backIndex: null,
    inflight: new Map(), // document id -> promise of its pending save
    pending: 0,
    busy: false,
    emptyState: null,
    pollTimer: null,
  };

  // --- Talking to the server -------------------------------------------------------------------------------

  function url(name, documentId) {
    return boot.urls[name].replace(/\/documents\/0(?=\/|$)/, "/documents/" + documentId);
  }

  async function call(method, target, body) {
    const response = await fetch(target, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      // Not JSON: a CSRF failure (403) or a proxy's error page.
      data = {
        error:
          response.status === 403
            ? "The server refused the request (403). Reload the page to continue."
            : `The server answered ${response.status} ${response.statusText}.`,
      };
    }
    return { ok: response.ok, status: response.status, data: data || {} };
  }

  // Network failures and overloaded servers are retried with the same submission id, so a retry never
  // stores a second answer; anything else (a refused label, a lost session) is shown to the reviewer.
  async function callWithRetry(method, target, body) {
    for (let attempt = 0; ; attempt++) {
      let result;
      try {
        result = await call(method, target, body);
      } catch (error) {
        result = { ok: false, status: 0, data: { error: "Docket could not be reached." } };
      }
      const transient = result.status === 0 || result.status === 502 || result.status === 503 || result.status === 504;
      if (!transient || attempt >= RETRY_DELAYS_MS.length) return result;
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[attempt]));
    }
  }

  function askNext(after) {
    return callWithRetry("POST", boot.urls.next, after ? { after } : {});
  }

  function track(documentId, promise) {
    state.pending += 1;
    renderSaveStatus();
    const tracked = promise.finally(() => {
      state.pending -= 1;
      if (state.inflight.get(documentId) === tracked) state.inflight.delete(documentId);
      renderSaveStatus();
    });
    state.inflight.set(documentId, tracked);
    return tracked;
  }

  // --- Showing a document ----------------------------------------------------------------------------------

  function humanize(value) {
    const text = String(value).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function showDocument(doc, selection) {
    workspace.hidden = false;
    $("empty-state").hidden = true;
    workspace.dataset.mode = state.mode;
    $("edit-banner").hidden = state.mode !== "edit";
    const text = $("doc");
    text.textContent = doc.text;
    text.dataset.documentId = String(doc.id);
    text.scrollTop = 0;
    const kind = doc.context.find((item) => item.key === "kind");
    $("doc-kicker").textContent = [kind ? humanize(kind.value) : "", doc.external_id].filter(Boolean).join(" · ");
    $("doc-title").textContent = doc.title;
    const chips = $("doc-context");
    chips.replaceChildren();
    for (const item of doc.context) {
      if (item.key === "kind" || item.key === "source_title") continue;
      const chip = document.createElement("li");
      chip.innerHTML = `<span class="muted"></span> `;
      chip.firstChild.textContent = humanize(item.key);
      chip.append(item.value);
      chips.append(chip);
    }
    const meta = $("doc-meta");
    meta.replaceChildren();
    for (const item of doc.metadata) {
      const term = document.createElement("dt");
      term.textContent = item.key;
      const value = document.createElement("dd");
      value.textContent = item.value;
      meta.append(term, value);
    }
    $("doc-meta-box").hidden = doc.metadata.length === 0;
    renderSuggestion(doc.suggestion);
    state.selected = new Set(selection);
    state.selectionTouched = false;
    renderSelection();
    resetGuideline(selection);
    markShown({ restartClock: true });
    $("skip-button").disabled = state.mode !== "queue";
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }

  // A document counts as on screen once the browser has painted it (the second animation frame after it was
  // put in the page runs after that paint), and may be answered REACTION_MS later. A new suggestion painted
  // over the document restarts the wait but not the reviewer's clock.
  function markShown({ restartClock }) {
    const seq = ++state.shownSeq;
    state.readyAt = Infinity;
    if (restartClock) state.paintedAt = null;
    workspace.dataset.ready = "false";
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        if (seq !== state.shownSeq) return;
        const now = performance.now();
        if (state.paintedAt === null) state.paintedAt = now;
        state.readyAt = now + REACTION_MS;
        setTimeout(() => {
          if (seq === state.shownSeq) workspace.dataset.ready = "true";
        }, REACTION_MS);
      }),
    );
  }

  // Whether an input event came late enough to be meant for the document on screen. The event's own time
  // stamp counts, not when it is handled: presses queued while the page was busy carry their real time.
  function meantForShownDocument(event) {
    const at = event && event.timeStamp > 0 ? event.timeStamp : performance.now();
    if (event && event.type === "click" && event.detail > 1) return false; // the second click of a double click
    return at >= state.readyAt;
  }

  function secondsOnScreen() {
    if (state.paintedAt === null) return 0;
    return Math.round((performance.now() - state.paintedAt) / 100) / 10;
  }

  function renderSuggestion(suggestion, { updating } = {}) {
    const info = $("model-info");
    if (updating) {
      info.innerHTML = `<span class="badge">Model v<span></span></span><span class="muted">now serving; updating this suggestion…</span>`;
      info.querySelector(".badge span").textContent = state.modelNumber;
      return;
    }
    if (suggestion && suggestion.from_label_descriptions) {
      // Before the first model: the suggestion compares the text with each label's name, description and guideline.
      info.innerHTML = `<span class="badge" title="No model yet: suggested by comparing the text with each label's name, description and guideline.">From label descriptions</span><span class="muted">suggestion pre-selected</span>`;
    } else if (suggestion) {
      info.innerHTML = `<span class="badge">Model v<span></span></span><span class="muted">suggestion pre-selected</span>`;
      info.querySelector(".badge span").textContent = suggestion.model_version;
    } else if (boot.model) {
      info.innerHTML = `<span class="muted">No suggestion for this document yet</span>`;
    } else {
      info.innerHTML = `<span class="muted" title="Suggestions appear once the first model is trained from your labels.">No model yet</span>`;
    }
    for (const [key, button] of buttons) {
      const prob = button.querySelector(".prob");
      const p = suggestion ? suggestion.probabilities[key] : undefined;
      button.classList.toggle("suggested", Boolean(suggestion && suggestion.labels.includes(key)));
      if (p === undefined) {
        prob.hidden = true;
        continue;
      }
      prob.hidden = false;
      prob.querySelector(".prob-bar span").style.width = `${Math.round(p * 100)}%`;
      prob.querySelector(".prob-text").textContent = `${Math.round(p * 100)}%`;
      button.dataset.probability = p.toFixed(3);
    }
  }

  function renderSelection() {
    for (const [key, button] of buttons) {
      const on = state.selected.has(key);
      button.classList.toggle("on", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  // "All saved" only when nothing is on its way and nothing failed; a failed save stays counted until that
  // document is saved.
  function renderSaveStatus() {
    const status = $("save-status");
    const failed = state.failures.size;
    status.dataset.pending = String(state.pending);
    status.dataset.failed = String(failed);
    const parts = [];
    if (state.pending) parts.push(`Saving ${state.pending}…`);
    if (failed) parts.push(`${failed} not saved`);
    status.textContent = parts.length ? parts.join(" · ") : "All saved";
    status.classList.toggle("busy", state.pending > 0 && failed === 0);
    status.classList.toggle("failed", failed > 0);
  }

  function showEmpty(reason) {
    state.mode = "empty";
    state.emptyState = reason;
    workspace.hidden = true;
    workspace.dataset.mode = "empty";
    const texts = {
      empty: ["Nothing to label yet", "No documents have been imported into this project."],
      done: [
        "The queue is finished",
        "Every document is labeled or held for legal review. New imports and documents sent back for review will appear here.",
      ],
      held: [
        "Everything left is with other reviewers",
        "The remaining documents are held by other reviewers right now. Any they leave come back to the queue; this page checks again every 30 seconds.",
      ],
      skipped: ["Only documents you skipped are left", "Other reviewers will take the documents you skipped."],
    };
    const [title, text] = texts[reason] || texts.done;
    const box = $("empty-state");
    box.dataset.state = reason;
    $("empty-title").textContent = title;
    $("empty-text").textContent = text;
    box.hidden = false;
    clearTimeout(state.pollTimer);
    if (reason === "held") state.pollTimer = setTimeout(loadFirst, HELD_POLL_MS);
  }

  let noticeTimer = null;
  function notice(message, kind) {
    const box = $("notice");
    box.textContent = message;
    box.className = `notice ${kind || "info"}`;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (box.hidden = true), kind === "error" ? 8000 : 4000);
  }

  function failure(doc, message) {
    const box = $("failures");
    const item = document.createElement("p");
    item.dataset.documentId = String(doc.id);
    item.textContent = `Not saved: “${doc.title}” (${doc.external_id || "document " + doc.id}). ${message} Press U to go back to it.`;
    if (state.failures.has(doc.id)) state.failures.get(doc.id).replaceWith(item);
    else box.append(item);
    state.failures.set(doc.id, item);
    box.hidden = false;
    renderSaveStatus();
  }

  function saved(doc) {
    const item = state.failures.get(doc.id);
    if (!item) return;
    item.remove();
    state.failures.delete(doc.id);
    $("failures").hidden = state.failures.size === 0;
    renderSaveStatus();
  }

  // --- The queue -------------------------------------------------------------------------------------------

  function showQueueDocument(doc) {
    state.mode = "queue";
    state.current = doc;
    state.submissionId = newSubmissionId();
    state.backIndex = null;
    clearTimeout(state.pollTimer);
    const suggested = doc.suggestion ? doc.suggestion.labels : [];
    showDocument(doc, doc.my_labels || suggested);
    if (doc.suggestion && state.modelNumber !== null && doc.suggestion.model_version !== state.modelNumber) {
      refreshSuggestion(); // fetched before another model started serving
    }
    // Prefetch, so the next document is ready before Enter is pressed. Wait for saves and skips still on
    // their way first: until they land the server still counts those documents as held by this reviewer,
    // and would hand one of them back as "next".
    state.upcoming = settled().then(() => askNext(doc.id));
  }

  function settled() {
    return Promise.allSettled([...state.inflight.values()]);
  }

  function take(result) {
    if (!result.ok) {
      notice(result.data.error || "The next document could not be loaded.", "error");
      return false;
    }
    if (result.data.document) showQueueDocument(result.data.document);
    else {
      state.current = null;
      showEmpty(result.data.state);
    }
    return true;
  }

  async function loadFirst() {
    take(await askNext(null));
  }

  async function advance() {
    state.busy = true;
    try {
      const upcoming = state.upcoming;
      state.upcoming = null;
      let result = upcoming ? await upcoming : null;
      // Ask again when the prefetch found nothing or failed: a lease may have expired since. Once the
      // answer just given has landed, though, or the server would hand that very document back.
      if (!result || !result.ok || !result.data.document) {
        await settled();
        result = await askNext(null);
      }
      take(result);
    } finally {
      state.busy = false;
    }
  }

  function selectionProblem(keys) {
    if (boot.project.multiLabel && keys.length === 0) return "Choose at least one label before submitting.";
    if (!boot.project.multiLabel && keys.length !== 1) return "Choose one label before submitting.";
    return null;
  }

  function orderedSelection() {
    return boot.labels.map((label) => label.key).filter((key) => state.selected.has(key));
  }

  function save(doc, keys, extra) {
    const body = Object.assign({ labels: keys, submission_id: newSubmissionId(), ticket: doc.ticket }, extra);
    return track(
      doc.id,
      callWithRetry("POST", url("annotate", doc.id), body).then((result) => {
        if (!result.ok) {
          if (result.status === 409 && result.data.code === "labels_changed") {
            // The taxonomy changed under this answer: U reloads the labels with this document open.
            state.labelsChangedFor = doc.id;
          }
          failure(doc, result.data.error || `The server answered ${result.status}.`);
          return result;
        }
        saved(doc);
        if (result.data.created) {
          $("stat-today").textContent = String(Number($("stat-today").textContent) + 1);
          $("stat-labeled").textContent = String(Number($("stat-labeled").textContent) + 1);
        }
        if (result.data.leaseLost) {
          notice(`Saved “${doc.title}”, though your hold on it had expired; another reviewer may label it too.`);
        }
        return result;
      }),
    );
  }

  function tooSoon() {
    notice("Not submitted: that document had only just appeared. Read it, then press Enter.");
  }

  function submit(event) {
    if (state.busy) return;
    if ((state.mode === "edit" || state.mode === "queue") && !meantForShownDocument(event)) return tooSoon();
    if (state.mode === "edit") return saveEarlier();
    if (state.mode !== "queue" || !state.current) return;
    const keys = orderedSelection();
    const problem = selectionProblem(keys);
    if (problem) return notice(problem, "error");
    const doc = state.current;
    const suggestion = doc.suggestion;
    save(doc, keys, {
      submission_id: state.submissionId,
      seconds_spent: secondsOnScreen(),
      model_version_shown: suggestion ? suggestion.model_version : null,
      suggested_labels: suggestion ? suggestion.labels : [],
    });
    if (state.history[state.history.length - 1] !== doc.id) state.history.push(doc.id);
    advance();
  }

  function skip(event) {
    if (state.busy || state.mode !== "queue" || !state.current) {
      if (state.mode === "edit") notice("Skipping is for new documents. Press Esc to return to the queue.");
      return;
    }
    if (!meantForShownDocument(event)) {
      notice("Not skipped: that document had only just appeared.");
      return;
    }
    const doc = state.current;
    track(
      doc.id,
      callWithRetry("POST", url("skip", doc.id)).then((result) => {
        if (!result.ok) notice(result.data.error || "The skip was not recorded.", "error");
      }),
    );
    notice("Skipped. You will not be offered this document again.");
    advance();
  }

  // --- Going back to change an earlier answer --------------------------------------------------------------

  async function goBack() {
    if (state.labelsChangedFor) {
      window.location.assign(`${window.location.pathname}?document=${state.labelsChangedFor}`);
      return;
    }
    if (state.busy) return;
    const index = state.mode === "edit" && state.backIndex !== null ? state.backIndex - 1 : state.history.length - 1;
    if (state.history.length === 0) return notice("Nothing to go back to yet: label a document first.");
    if (index < 0) return notice("That is the first document you labeled here.");
    const documentId = state.history[index];
    state.busy = true;
    try {
      if (state.inflight.has(documentId)) await state.inflight.get(documentId);
      const result = await callWithRetry("GET", url("document", documentId));
      if (!result.ok) return notice(result.data.error || "That document could not be opened.", "error");
      if (state.mode === "queue") state.currentSelection = new Set(state.selected);
      state.backIndex = index;
      openEarlier(result.data.document);
    } finally {
      state.busy = false;
    }
  }

  function openEarlier(doc) {
    state.mode = "edit";
    state.editing = doc;
    const suggested = doc.suggestion ? doc.suggestion.labels : [];
    showDocument(doc, doc.my_labels || suggested);
  }

  async function saveEarlier() {
    const doc = state.editing;
    const keys = orderedSelection();
    const problem = selectionProblem(keys);
    if (problem) return notice(problem, "error");
    state.busy = true;
    try {
      const result = await save(doc, keys, {});
      if (!result.ok) return;
      notice(result.data.changed ? `Changed your answer for “${doc.title}”.` : "No change: the labels were the same.");
      if (state.standaloneEdit) {
        // My work says what was saved; the notice above would vanish with this page.
        window.location.assign(`${boot.savedUrl}&changed=${result.data.changed ? 1 : 0}`);
        return;
      }
      leaveEarlier();
    } finally {
      state.busy = false;
    }
  }

  function leaveEarlier() {
    if (state.mode !== "edit") return;
    if (state.standaloneEdit) {
      window.location.assign(boot.returnUrl);
      return;
    }
    state.editing = null;
    state.backIndex = null;
    if (state.current) {
      state.mode = "queue";
      showDocument(state.current, state.currentSelection || []);
    } else {
      showEmpty(state.emptyState || "done");
    }
  }

  // --- Flagging --------------------------------------------------------------------------------------------

  function openFlag() {
    const doc = state.mode === "edit" ? state.editing : state.current;
    if (!doc || state.busy) return;
    $("flag-error").hidden = true;
    $("flag-comment").value = "";
    $("flag-dialog").showModal();
    $("flag-comment").focus();
  }

  async function sendFlag(event) {
    event.preventDefault();
    const doc = state.mode === "edit" ? state.editing : state.current;
    const comment = $("flag-comment").value.trim();
    if (!comment) {
      $("flag-error").textContent = "Say why this document needs legal review.";
      $("flag-error").hidden = false;
      return;
    }
    const result = await track(doc.id, callWithRetry("POST", url("flag", doc.id), { comment }));
    if (!result.ok) {
      $("flag-error").textContent = result.data.error || "The flag was not saved.";
      $("flag-error").hidden = false;
      return;
    }
    $("flag-dialog").close();
    notice(`Flagged “${doc.title}” for legal review.`);
    if (state.mode === "edit") leaveEarlier();
    else advance();
  }

  // --- Labels, guidelines, keys ----------------------------------------------------------------------------

  function toggle(key) {
    if (state.mode !== "queue" && state.mode !== "edit") return;
    if (boot.project.multiLabel) {
      if (state.selected.has(key)) state.selected.delete(key);
      else state.selected.add(key);
    } else {
      state.selected = state.selected.has(key) ? new Set() : new Set([key]);
    }
    state.selectionTouched = true;
    renderSelection();
    showGuideline(key);
  }

  // --- The serving model ------------------------------------------------------------------------------------

  async function pollModel() {
    try {
      if (document.visibilityState === "visible") {
        const result = await call("GET", boot.urls.model);
        if (result.ok) modelServing(result.data.model);
      }
    } catch (error) {
      // Offline for a moment: the next poll asks again.
    } finally {
      setTimeout(pollModel, MODEL_POLL_MS);
    }
  }

  function modelServing(model) {
    const number = model ? model.number : null;
    if (number === state.modelNumber) return;
    state.modelNumber = number;
    boot.model = model;
    refreshSuggestion();
  }

  // Ask again for the suggestion on the queue document on screen after another model started serving. Its
  // labels are pre-selected anew unless the reviewer already changed them; either way Enter waits until the
  // new suggestion has been painted.
  async function refreshSuggestion() {
    const doc = state.current;
    if (state.mode !== "queue" || !doc) return;
    if (doc.suggestion && doc.suggestion.model_version === state.modelNumber) return;
    if (doc.suggestion) renderSuggestion(null, { updating: true });
    const result = await callWithRetry("GET", url("document", doc.id));
    if (!result.ok || state.current !== doc || state.mode !== "queue") return;
    doc.suggestion = result.data.document.suggestion;
    renderSuggestion(doc.suggestion);
    if (!state.selectionTouched && !doc.my_labels) {
      state.selected = new Set(doc.suggestion ? doc.suggestion.labels : []);
      renderSelection();
    }
    markShown({ restartClock: false });
  }

  // Guidelines are short Markdown; only paragraphs, **bold** and *italic* are rendered, all else is text.
  function renderGuideline(markdown) {
    const escaped = markdown.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
    return escaped
      .split(/\n{2,}/)
      .map((paragraph) =>
        "<p>" +
        paragraph
          .replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>")
          .replace(/\*(.+?)\*/g, "<em>$1</em>")
          .replace(/\n/g, "<br>") +
        "</p>",
      )
      .join("");
  }

  function showGuideline(key) {
    const label = labelsByKey.get(key);
    if (!label) return;
    $("guideline-title").textContent = label.parent ? `${label.parent} › ${label.name}` : label.name;
    const text = label.guideline || label.description;
    const body = $("guideline-body");
    body.classList.toggle("muted", !text);
    body.innerHTML = text ? renderGuideline(text) : "No guideline has been written for this label yet.";
  }

  // A new document starts with the guideline of the label it arrives with (the suggestion, or the reviewer's
  // earlier answer), never the one the previous document left behind.
  function resetGuideline(selection) {
    const first = [...selection].find((key) => labelsByKey.has(key));
    if (first) return showGuideline(first);
    $("guideline-title").textContent = "Guidelines";
    const body = $("guideline-body");
    body.classList.add("muted");
    body.textContent = "Point at a label, or press its key, to read its guideline here.";
  }

  for (const [key, button] of buttons) {
    button.addEventListener("click", () => toggle(key));
    button.addEventListener("mouseenter", () => showGuideline(key));
    button.addEventListener("focus", () => showGuideline(key));
  }
  $("submit-button").addEventListener("click", submit);
  $("skip-button").addEventListener("click", skip);
  $("back-button").addEventListener("click", goBack);
  $("flag-button").addEventListener("click", openFlag);
  $("help-button").addEventListener("click", () => $("help-dialog").showModal());
  $("flag-form").addEventListener("submit", sendFlag);
  $("flag-cancel").addEventListener("click", () => $("flag-dialog").close());
  $("flag-comment").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("flag-form").requestSubmit();
    }
  });

  document.addEventListener("keydown", (event) => {
    const help = $("help-dialog");
    if (help.open) {
      if (event.key === "?") {
        event.preventDefault();
        help.close();
      }
      return;
    }
    if ($("flag-dialog").open || event.defaultPrevented) return;
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "?") {
      event.preventDefault();
      help.showModal();
      return;
    }
    if (event.repeat && key !== "Tab") return event.preventDefault(); // a held key must not submit a run of documents
    if (key === "Enter") {
      event.preventDefault(); // not also a click on a focused button
      submit(event);
    } else if (key === "Escape") {
      leaveEarlier();
    } else if (key === "s") {
      event.preventDefault();
      skip(event);
    } else if (key === "u") {
      event.preventDefault();
      goBack();
    } else if (key === "f") {
      event.preventDefault();
      openFlag();
    } else if (labelsByShortcut.has(key)) {
      event.preventDefault();
      toggle(labelsByShortcut.get(key).key);
    }
  });

  window.addEventListener("beforeunload", (event) => {
    if (state.pending > 0) event.preventDefault(); // answers still on their way: ask before leaving
  });

  function newSubmissionId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // --- Start -----------------------------------------------------------------------------------------------

  if (boot.editDocument) {
    callWithRetry("GET", url("document", boot.editDocument)).then((result) => {
      if (result.ok) openEarlier(result.data.document);
      else notice(result.data.error || "That document could not be opened.", "error");
    });
  } else {
    loadFirst();
  }
  setTimeout(pollModel, MODEL_POLL_MS);
})();
