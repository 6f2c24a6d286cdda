// Explore: tick rows, a page at a time or all matching, and say how many are selected.
(function () {
  "use strict";
  const form = document.getElementById("results-form");
  if (!form) return;
  const rows = Array.from(form.querySelectorAll("input.select-row"));
  const page = document.getElementById("select-page");
  const all = document.getElementById("all-matching");
  const count = document.getElementById("selected-count");
  const total = document.getElementById("result-count");

  function update() {
    const ticked = rows.filter((box) => box.checked).length;
    if (all && all.checked) {
      count.textContent = "all matching selected (" + total.textContent.trim() + ")";
    } else {
      count.textContent = ticked + " selected";
    }
    if (page) page.checked = rows.length > 0 && ticked === rows.length;
  }

  if (page) {
    page.addEventListener("change", function () {
      rows.forEach((box) => { box.checked = page.checked; });
      update();
    });
  }
  rows.forEach((box) => box.addEventListener("change", update));
  if (all) all.addEventListener("change", update);
  update();
})();
