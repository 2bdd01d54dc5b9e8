// "Sign and send orders" (and "Discontinue"): show that the orders are being sent and prevent a
// second click while they are. The server is idempotent anyway; this is for the person waiting.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.matches || !form.matches("form[data-sending]")) return;
  var button = form.querySelector("button[type=submit]");
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-disabled", "true");
    button.textContent = form.getAttribute("data-sending");
  }
  var status = form.querySelector("[data-sending-status]");
  if (status) {
    status.hidden = false;
    status.textContent = form.getAttribute("data-sending") + " Do not close this page.";
  }
});
