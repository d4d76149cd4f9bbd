// Gatehouse dashboard: optional progressive enhancement. Every page works without it.
// - [data-copy="ID"] buttons copy the text of element ID (shown-once secrets).
// - forms with data-confirm="question" ask before submitting (revoke, disable, drain).
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = "Copied";
  });
});
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy]").forEach(function (b) { b.hidden = false; });
});
