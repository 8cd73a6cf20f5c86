// Approves or denies the request the page shows, through the JSON API, and
// says what happened in the live regions (#status, #problem).
(function () {
  "use strict";
  var form = document.getElementById("approve-form");
  if (!form) {
    return;
  }
  var status = document.getElementById("status");
  var problem = document.getElementById("problem");
  var userCode = form.getAttribute("data-user-code");
  var deviceId = form.getAttribute("data-device-id");
  var buttons = form.querySelectorAll("button");

  function busy(on) {
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].disabled = on;
    }
  }

  // post sends body as JSON; it resolves to null on success, else to the
  // message to show.
  function post(path, body) {
    busy(true);
    problem.textContent = "";
    status.textContent = "Sending…";
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store"
    }).then(function (resp) {
      if (resp.ok) {
        return null;
      }
      return resp.json().then(function (e) {
        return e.message || "The proxy answered " + resp.status + ".";
      }, function () {
        return "The proxy answered " + resp.status + ".";
      });
    }, function () {
      return "The proxy could not be reached; check the connection and try again.";
    });
  }

  function finish(text) {
    form.hidden = true;
    status.textContent = text;
  }

  function fail(message, focus) {
    busy(false);
    status.textContent = "";
    problem.textContent = message;
    focus.focus();
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var username = form.elements.username.value.trim();
    var password = form.elements.password.value;
    if (username === "" || password === "") {
      fail("Type the username and the PIN of a user of " + deviceId + ".",
        username === "" ? form.elements.username : form.elements.password);
      return;
    }
    post("/api/auth/device/approve", { user_code: userCode, username: username, password: password })
      .then(function (message) {
        if (message === null) {
          finish("Approved: " + deviceId + " is signed in as " + username + ". You can close this page.");
          return;
        }
        form.elements.password.value = "";
        fail(message, form.elements.password);
      });
  });

  document.getElementById("deny").addEventListener("click", function () {
    post("/api/auth/device/deny", { user_code: userCode }).then(function (message) {
      if (message === null) {
        finish("Denied: " + deviceId + " will not be signed in.");
        return;
      }
      fail(message, document.getElementById("deny"));
    });
  });
})();
