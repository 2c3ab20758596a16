// Live view: one card per camera with its MJPEG stream; status, fps and people refreshed every second.
"use strict";

function cameraCard(camera) {
  const image = el("img", {id: "stream-" + camera.id, alt: "live video of " + camera.name,
                           src: "/api/cameras/" + encodeURIComponent(camera.id) + "/stream.mjpg"});
  return el("section", {class: "card cam", id: "cam-" + camera.id},
    el("div", {class: "head"}, el("h2", {}, camera.name), el("span", {class: "status"}, ""),
       el("span", {class: "stats"}, "")),
    el("div", {class: "body"}, image,
       el("div", {}, el("h3", {class: "sub"}, "In view"),
          el("div", {class: "table-scroll"}, el("table", {class: "people"}, el("thead", {}, el("tr", {},
            el("th", {}, "Person"), el("th", {}, "Label"), el("th", {}, "Age"), el("th", {}, "P(female)"),
            el("th", {}, "In view"))), el("tbody", {}))),
          el("h3", {class: "sub"}, "Counted"), el("div", {class: "counted"}, "–"))));
}

function update(card, camera) {
  const status = card.querySelector(".status");
  status.textContent = camera.status;
  status.className = "status " + camera.status;
  card.querySelector(".stats").textContent = (camera.fps === null ? "– fps" : camera.fps.toFixed(1) + " fps") +
    " · " + camera.faces_in_view + " face" + (camera.faces_in_view === 1 ? "" : "s") + " in view";
  const totals = camera.totals;
  card.querySelector(".counted").textContent = totals.people + (totals.people === 1 ? " person" : " people") +
    " counted since start (" +
    totals.female + " female, " + totals.male + " male" +
    (totals.gender_unknown ? ", " + totals.gender_unknown + " undecided or no label" : "") + ")";
  const body = card.querySelector("tbody");
  body.textContent = "";
  if (!camera.people.length) {
    body.append(el("tr", {}, el("td", {colspan: "5", class: "empty"}, "nobody in view")));
  }
  camera.people.forEach((person) => body.append(el("tr", {},
    el("td", {class: "num"}, "#" + person.track_id), el("td", {}, chip(person.label, person.gender)),
    el("td", {class: "num"}, fmt(person.age, 0, " y")), el("td", {class: "num"}, fmt(person.p_female, 2)),
    el("td", {class: "num"}, fmt(person.in_view_s, 0, " s")))));
}

async function refresh() {
  const response = await fetch("/api/cameras");
  if (!response.ok) return;
  const cameras = await response.json();
  const grid = document.getElementById("cameras");
  if (!cameras.length && !grid.children.length) {
    grid.append(el("div", {class: "card empty", id: "no-cameras"},
      "No camera in this server. Start one with: python -m stream --source CAMERA --serve 127.0.0.1:8080"));
  }
  cameras.forEach((camera) => {
    let card = document.getElementById("cam-" + camera.id);
    if (!card) { card = cameraCard(camera); grid.append(card); }
    update(card, camera);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  loadInfo();
  refresh();
  setInterval(refresh, 1000);
});
