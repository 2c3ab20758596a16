// Upload page: send the file to POST /api/analyze and show the annotated picture, each face's label, its
// age-group chart (SVG drawn by the server) and the models used.
"use strict";

const status = (text, isError) => {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = isError ? "error" : "";
};

function faceCard(face) {
  const chart = el("div", {class: "chart-box"});
  if (face.chart_svg) chart.innerHTML = face.chart_svg;  // rendered and escaped by the server
  else chart.append(el("div", {class: "empty"}, face.classified ? "no age estimate" :
                                              "too small or unsure to classify"));
  const facts = el("dl", {},
    el("dt", {}, "Age group"), el("dd", {}, face.age_range || (face.age_group_probs ? "undecided" : "–")),
    el("dt", {}, "Probability"), el("dd", {}, fmt(face.confidence === null ? null : face.confidence * 100, 0, "%")),
    el("dt", {}, "Age"), el("dd", {}, fmt(face.age, 0, " years")),
    el("dt", {}, "Gender"), el("dd", {}, face.gender || (face.p_female === null ? "–" : "undecided")),
    el("dt", {}, "P(female)"), el("dd", {}, fmt(face.p_female, 2)),
    el("dt", {}, "Box"), el("dd", {}, face.box.map((v) => Math.round(v)).join(", ")));
  const thumb = el("canvas", {class: "thumb " + genderClass(face.gender), width: "72", height: "72"});
  return el("div", {class: "face-card", "data-face": face.id},
            thumb, el("div", {}, chip(face.text, face.gender), facts), chart);
}

// Each face's crop, so a card is easy to match with its face. The crop comes from the user's own file when it
// decodes here (clean, without the neighbours' boxes and labels a crowd's annotated picture has over each face),
// and from the annotated picture in privacy mode (faces obscured) or when the browser cannot read the file.
let privacyMode = "none";

function drawThumbs(annotated, faces, file, width) {
  const draw = (image, scale) => faces.forEach((face) => {
    const canvas = document.querySelector('.face-card[data-face="' + face.id + '"] canvas');
    if (!canvas) return;
    const [x1, y1, x2, y2] = face.box;
    const side = Math.max(x2 - x1, y2 - y1) * 1.3;
    const cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
    canvas.getContext("2d").drawImage(image, (cx - side / 2) * scale, (cy - side / 2) * scale,
                                      side * scale, side * scale, 0, 0, 72, 72);
  });
  if (privacyMode !== "none" || !file) { draw(annotated, 1); return; }
  const original = new Image();
  const url = URL.createObjectURL(file);
  // Boxes are in the analysed picture's pixels (downscaled like the CLI's); the file may be larger.
  original.onload = () => { URL.revokeObjectURL(url); draw(original, original.naturalWidth / width); };
  original.onerror = () => { URL.revokeObjectURL(url); draw(annotated, 1); };
  original.src = url;
}

function trackRow(track) {
  const seen = track.age_group_probs !== null || track.p_female !== null;
  const label = seen ? track.text : track.text + " (seen too briefly for a label)";
  return el("tr", {}, el("td", {class: "num"}, "#" + track.track_id), el("td", {}, chip(label, track.gender)),
            el("td", {class: "num"}, fmt(track.duration_s, 1, " s")), el("td", {class: "num"}, track.n_obs),
            el("td", {class: "num"}, fmt(track.p_female, 2)));
}

function show(answer, file) {
  document.getElementById("result").hidden = false;
  const image = document.getElementById("annotated");
  if (answer.annotated_jpeg) {
    image.onload = () => { if (answer.kind === "image") drawThumbs(image, answer.faces, file, answer.width); };
    image.src = "data:image/jpeg;base64," + answer.annotated_jpeg;
  }
  const faces = document.getElementById("faces");
  faces.textContent = "";
  const summary = document.getElementById("summary");
  if (answer.kind === "image") {
    document.getElementById("faces-title").textContent = answer.faces.length + " face" +
      (answer.faces.length === 1 ? "" : "s");
    if (!answer.faces.length) faces.append(el("div", {class: "empty"}, "No face found in this picture."));
    answer.faces.forEach((face) => faces.append(faceCard(face)));
    const scaled = answer.original_size[1] !== answer.height ?
      " (downscaled from " + answer.original_size.join("×") + ")" : "";
    summary.textContent = answer.format + " image analysed at " + answer.width + "×" + answer.height + scaled;
  } else {
    document.getElementById("faces-title").textContent = answer.tracks.length + " " +
      (answer.tracks.length === 1 ? "person" : "people") + " in the clip";
    const body = el("tbody", {});
    answer.tracks.forEach((track) => body.append(trackRow(track)));
    faces.append(el("table", {id: "tracks"}, el("thead", {}, el("tr", {}, el("th", {}, "Person"),
      el("th", {}, "Label"), el("th", {}, "In view"), el("th", {}, "Looks"), el("th", {}, "P(female)"))), body));
    summary.textContent = answer.frames + " frames at " + answer.fps + " fps (" + answer.duration_s +
      " s); the picture is the frame with the most labelled faces";
  }
  const info = document.getElementById("model-info");
  info.textContent = "";
  info.append(describeModels(answer.models));
}

async function analyze(file) {
  if (!file) return;
  status("Analysing " + file.name + " …");
  const form = new FormData();
  form.append("file", file);
  try {
    const response = await fetch("/api/analyze?annotated=true&charts=true", {method: "POST", body: form});
    const answer = await response.json();
    if (!response.ok) { status("Could not analyse " + file.name + ": " + answer.detail, true); return; }
    show(answer, file);
    status(file.name + " analysed.");
  } catch (error) {
    status("The server did not answer (" + error + ").", true);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  input.addEventListener("change", () => analyze(input.files[0]));
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => { event.preventDefault(); analyze(event.dataTransfer.files[0]); });
  const info = await loadInfo();
  if (info) {
    privacyMode = info.privacy;
    document.getElementById("limits").textContent = info.accepted + "; up to " + info.max_upload_mb +
      " MB, clips up to " + info.max_clip_s + " s. " + (info.privacy !== "none" ? "Privacy mode: faces are " +
      (info.privacy === "blur" ? "blurred" : "pixelated") + " in the picture." : "");
    document.getElementById("model-info").append(describeModels(info.models));
  }
});
