// Session explorer: the little JavaScript it has. Every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // The status filter lists as soon as it changes.
  document.querySelectorAll("select.auto-submit").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form && select.form.reportValidity()) { select.form.submit(); }
    });
  });
  // "expand all" / "collapse all" for the <details> of a section.
  document.querySelectorAll("button.toggle-details").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.target);
      if (!target) { return; }
      var open = button.textContent === "expand all";
      target.querySelectorAll("details").forEach(function (d) { d.open = open; });
      button.textContent = open ? "collapse all" : "expand all";
    });
  });
});
