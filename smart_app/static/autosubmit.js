// Submit the POST authorization form once the page has loaded. Without scripts the button works.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-autosubmit='true']");
  if (form) { form.submit(); }
});
