// dealbooks console: small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // The due date the chosen terms imply, shown as soon as terms (or the invoice date) change.
  function dueDates() {
    var terms = document.querySelector("[data-terms]");
    var start = document.querySelector("[data-invoice-date]");
    var due = document.querySelector("[data-due-date]");
    var hint = document.querySelector("[data-due-hint]");
    if (!terms || !start || !due || !hint) return;
    function update() {
      var option = terms.options[terms.selectedIndex];
      var days = option ? option.getAttribute("data-due-days") : "";
      if (days === "" || !start.value) return;
      var d = new Date(start.value + "T00:00:00Z");
      d.setUTCDate(d.getUTCDate() + parseInt(days, 10));
      var iso = d.toISOString().slice(0, 10);
      due.value = iso;
      hint.textContent = hint.getAttribute("data-template").replace("{date}", iso);
    }
    terms.addEventListener("change", update);
    start.addEventListener("change", update);
  }

  // The outcome of a request, asked again every 1.5 s until it is no longer pending.
  function outcome() {
    var box = document.querySelector("[data-outcome]");
    if (!box || box.getAttribute("data-status") !== "pending") return;
    var url = box.getAttribute("data-outcome");
    var tries = 0;
    function poll() {
      tries += 1;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html) {
            box.innerHTML = html;
            var part = box.querySelector("[data-status]");
            if (part && part.getAttribute("data-status") !== "pending") {
              box.setAttribute("data-status", part.getAttribute("data-status"));
              var heading = box.querySelector("h2");
              if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
              return;
            }
          }
          if (tries < 200) setTimeout(poll, 1500);
        })
        .catch(function () { if (tries < 200) setTimeout(poll, 3000); });
    }
    setTimeout(poll, 800);
  }

  // A form that acts is sent once: its buttons are disabled after the first submit.
  function once() {
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.getAttribute("data-sent")) { event.preventDefault(); return; }
        form.setAttribute("data-sent", "1");
        var clicked = event.submitter;
        if (clicked && clicked.name) {
          var keep = document.createElement("input");
          keep.type = "hidden"; keep.name = clicked.name; keep.value = clicked.value;
          form.appendChild(keep);
        }
        setTimeout(function () {
          form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
          if (clicked && clicked.getAttribute("data-busy")) clicked.textContent = clicked.getAttribute("data-busy");
        }, 0);
      });
    });
  }

  // A form kept while its service restarts is sent again by itself after a short countdown
  // (the same request id, so a second send never makes a second invoice).
  function resend() {
    var form = document.querySelector("form[data-resend-after]");
    if (!form) return;
    var left = parseInt(form.getAttribute("data-resend-after"), 10) || 5;
    var shown = form.querySelector("[data-countdown]");
    var button = form.querySelector("button[type=submit]");
    function tick() {
      if (form.getAttribute("data-sent")) return;
      left -= 1;
      if (left <= 0) { form.requestSubmit(button); return; }
      if (shown) shown.textContent = shown.getAttribute("data-template").replace("{seconds}", left);
      setTimeout(tick, 1000);
    }
    setTimeout(tick, 1000);
  }

  // Destructive buttons ask first.
  function confirms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // The mapping editor offers only CRM properties whose type fits the chosen QuickBooks field.
  function mappingFits() {
    document.querySelectorAll("[data-mapping-form]").forEach(function (row) {
      var qbo = row.querySelector("[data-qbo-field]");
      var crm = row.querySelector("[data-crm-property]");
      if (!qbo || !crm) return;
      function filter() {
        var option = qbo.options[qbo.selectedIndex];
        var fits = option && option.getAttribute("data-fits");
        var allowed = fits ? fits.split(" ") : null;
        Array.prototype.forEach.call(crm.options, function (o) {
          var type = o.getAttribute("data-type");
          if (!type) return;
          var ok = !allowed || allowed.indexOf(type) >= 0;
          o.hidden = !ok; o.disabled = !ok;
          if (!ok && o.selected) crm.value = "";
        });
      }
      qbo.addEventListener("change", filter);
      filter();
    });
  }

  // The wizard's account choice reloads the first step for that company.
  function reloads() {
    document.querySelectorAll("[data-reload-on-change]").forEach(function (select) {
      select.addEventListener("change", function () {
        var url = new URL(window.location.href);
        url.searchParams.set(select.name, select.value);
        window.location.assign(url.toString());
      });
    });
  }

  // On a narrow screen the main links fold behind "Menu" (served open, for pages without JS).
  function menu() {
    var details = document.querySelector("[data-menu]");
    if (details && window.matchMedia("(max-width: 40rem)").matches) details.open = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    menu(); dueDates(); outcome(); once(); resend(); confirms(); mappingFits(); reloads();
    var errors = document.getElementById("form-errors");
    if (errors) errors.focus();
  });
})();
