// The Print button prints the sheet itself, also from inside an EHR frame (where the browser's Print
// would print the EHR page with the app clipped): the sheet is loaded into a hidden frame of the app
// and that frame is printed. The buttons are hidden in the HTML and shown here: without JavaScript the
// page offers only what works (the sheet's own page and its PDF).
document.querySelectorAll("button[data-print-url]").forEach(function (button) { button.hidden = false; });
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-print-url]");
  if (!button) { return; }
  event.preventDefault();
  var previous = document.getElementById("print-frame");
  if (previous) { previous.remove(); }
  var frame = document.createElement("iframe");
  frame.id = "print-frame";
  frame.className = "print-frame";
  frame.title = "Sheet being printed";
  frame.setAttribute("aria-hidden", "true");
  frame.tabIndex = -1;
  frame.addEventListener("load", function () {
    frame.contentWindow.focus();
    frame.contentWindow.print();
  });
  frame.src = button.getAttribute("data-print-url");
  document.body.appendChild(frame);
});
