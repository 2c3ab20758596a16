// Dashboard: totals, counts over time (server-rendered SVG charts), per-camera counts, people in view + CSV.
"use strict";

const AGE_GROUPS_SHORT = (groups) => groups.map((g) => el("th", {class: "num"}, g));

function kpi(value, label, id) { return el("div", {class: "kpi", id: id}, el("div", {class: "v"}, value),
                                             el("div", {class: "k"}, label)); }

function ageShown(p) {
  // The age as the overlay says it: a group, a range of two (21-40), "age?" when the evidence decides none.
  if (p.age_range || p.age_group) return p.age_range || p.age_group;
  return p.label.includes("estimating") ? "estimating" : "age?";
}

function genderShown(p) {
  if (p.gender) return p.gender;
  return p.p_female === null ? "estimating" : "undecided";
}

function render(data) {
  const total = data.total;  // the counts row of all cameras (the summary's counts.totals)
  const inView = data.people.length;
  const kpis = document.getElementById("kpis");
  kpis.textContent = "";
  kpis.append(kpi(total.people, "people counted", "kpi-total"), kpi(inView, "in view now", "kpi-in-view"),
              kpi(total.female, "female", "kpi-female"), kpi(total.male, "male", "kpi-male"),
              kpi(data.cameras.filter((c) => c.status === "live").length + " / " + data.cameras.length,
                  "cameras live", "kpi-cameras"));
  document.getElementById("window").textContent = fmtWindow(data.counts.window_s);
  const groups = Object.keys(total).filter((k) => k.startsWith("age_") && k !== "age_undecided");
  const camTable = document.getElementById("per-camera");
  camTable.tHead.textContent = "";
  camTable.tHead.append(el("tr", {}, el("th", {}, "Camera"), el("th", {}, "Status"), el("th", {class: "num"}, "People"),
    el("th", {class: "num"}, "F"), el("th", {class: "num"}, "M"), ...groups.map((g) => el("th", {class: "num"},
      g.slice(4))), el("th", {class: "num", title: "labelled with a range of two groups (21-40) or age?: no one age group"},
      "range / age?"),
    el("th", {class: "num", title: "left before a label was given"}, "no label")));
  const camBody = camTable.tBodies[0];
  camBody.textContent = "";
  const rows = data.cameras.map((c) => [c.name, el("span", {class: "status " + c.status}, c.status), c.totals]);
  rows.push(["All cameras", "", total]);
  rows.forEach(([name, status, totals]) => camBody.append(el("tr", {}, el("td", {}, name), el("td", {}, status),
    el("td", {class: "num"}, totals.people), el("td", {class: "num"}, totals.female),
    el("td", {class: "num"}, totals.male), ...groups.map((g) => el("td", {class: "num"}, totals[g])),
    el("td", {class: "num"}, totals.age_undecided), el("td", {class: "num"}, totals.estimating))));
  const people = document.getElementById("people");
  people.tHead.textContent = "";
  people.tHead.append(el("tr", {}, ...["Camera", "Person", "Label", "Age group", "Age", "Gender", "P(female)",
                                         "In view"].map((h) => el("th", {}, h))));
  const body = people.tBodies[0];
  body.textContent = "";
  if (!data.people.length) body.append(el("tr", {}, el("td", {colspan: "8", class: "empty"}, "nobody in view")));
  data.people.forEach((p) => body.append(el("tr", {}, el("td", {}, p.camera), el("td", {class: "num"}, "#" + p.track_id),
    el("td", {}, chip(p.label, p.gender)), el("td", {}, ageShown(p)), el("td", {class: "num"}, fmt(p.age, 0)),
    el("td", {}, genderShown(p)), el("td", {class: "num"}, fmt(p.p_female, 2)),
    el("td", {class: "num"}, fmt(p.in_view_s, 0, " s")))));
}

function fmtWindow(seconds) {
  return seconds >= 60 ? (seconds / 60) + " min" : seconds + " s";
}

function updateFilter(cameras) {
  const select = document.getElementById("camera-filter");
  cameras.forEach((camera) => {
    if (!select.querySelector('option[value="' + camera.id + '"]')) {
      select.append(el("option", {value: camera.id}, camera.name));
    }
  });
}

function drawCharts() {
  const camera = encodeURIComponent(document.getElementById("camera-filter").value);
  const query = "?camera=" + camera + "&t=" + Date.now();
  document.getElementById("chart-ages").src = "/api/charts/ages.svg" + query;
  document.getElementById("chart-genders").src = "/api/charts/genders.svg" + query;
}

async function refresh() {
  const response = await fetch("/api/dashboard");
  if (!response.ok) return;
  const data = await response.json();
  render(data);
  updateFilter(data.cameras);
  drawCharts();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("camera-filter").addEventListener("change", drawCharts);
  loadInfo();
  refresh();
  setInterval(refresh, 3000);
});
