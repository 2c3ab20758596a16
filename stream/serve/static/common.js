// Shared by the three pages: the page header's badges (privacy mode, cameras) and small helpers.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function genderClass(gender) { return gender === "female" || gender === "male" ? gender : "unknown"; }

function fmt(value, digits, suffix) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits) + (suffix || "");
}

function chip(text, gender) { return el("span", {class: "chip " + genderClass(gender)}, text); }

async function loadInfo() {
  const response = await fetch("/api/info");
  if (!response.ok) return null;
  const info = await response.json();
  const badges = document.querySelector(".badges");
  if (badges) {
    badges.textContent = "";
    const on = info.privacy !== "none";
    badges.append(el("span", {class: "badge" + (on ? " privacy-on" : ""), id: "privacy-badge"},
                     on ? "privacy: faces " + (info.privacy === "blur" ? "blurred" : "pixelated") : "privacy: off"));
    badges.append(el("span", {class: "badge"}, info.cameras.length + " camera" + (info.cameras.length === 1 ? "" : "s")));
  }
  return info;
}

function describeModels(models) {
  const box = el("div", {class: "models", id: "models"});
  const all = [["Detector", models.detector], ...models.classifiers.map((m) => ["Classifier", m])];
  all.forEach(([role, model], i) => {
    if (i) box.append(" · ");
    box.append(role + " ", el("b", {}, model.name), " (" + model.task + "): ");
    box.append(model.commercial_use ? model.licence : el("span", {class: "nc"}, model.licence));
  });
  return box;
}
