// Progressive enhancement for the console: confirmations, live progress. Every page works without it.
"use strict";

function fmt(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }

function duration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
}

function paint(root, job) {
  const set = (name, text) => { const el = root.querySelector('[data-field="' + name + '"]'); if (el) el.textContent = text; };
  const pct = job.total_texts ? 100 * job.texts_done / job.total_texts : (job.state === "done" ? 100 : 0);
  const bar = root.querySelector('[data-field="bar"]');
  if (bar) { bar.value = pct; bar.textContent = pct.toFixed(0) + "%"; }
  const state = root.querySelector('[data-field="state"]');
  if (state) { state.textContent = job.state; state.className = "state " + job.state; }
  set("texts", fmt(job.texts_done) + " / " + fmt(job.total_texts));
  set("rate", Math.round(job.texts_per_s).toLocaleString("en-US") + (root.matches("tr") ? "" : " texts/s"));
  set("chunks", job.chunks_done + " done · " + job.chunks_failed + " failed · " + (job.total_chunks ?? "?") + " in all");
  set("recent", Math.round(job.recent_texts_per_s || 0).toLocaleString("en-US") + " texts/s");
  // The same words as the server renders (routes_console._eta).
  set("eta", job.waiting_for_worker ? "waiting for a worker" : (job.eta_s !== null ? duration(job.eta_s) : (job.finished_at ? "finished" : "-")));
  if (job.in_flight) set("inflight", job.in_flight.pending + " pending · " + job.in_flight.being_scored + " being scored");
  const alone = root.querySelector('[data-field="no-worker"]');
  if (alone && job.no_worker !== undefined) { alone.textContent = job.no_worker; alone.hidden = !job.no_worker; }
}

document.addEventListener("DOMContentLoaded", () => {
  // A confirmed action (cancel, retry) navigates away: the live stream stops first, so the job ending because of it
  // cannot reload the page over the action's own redirect (and its message).
  let events = null;
  let leaving = false;
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
      leaving = true;
      if (events) events.close();
    });
  }

  const one = document.querySelector("[data-live-job]");
  if (one && one.dataset.finished === "no" && window.EventSource) {
    events = new EventSource("/v1/jobs/" + one.dataset.liveJob + "/events");
    events.addEventListener("progress", (e) => paint(one, JSON.parse(e.data)));
    // The job ended: load the page once more, so it shows its final state, failures and buttons from the server
    // (without the ?msg= of the action that led here: that flash was about the job before it ended).
    events.addEventListener("end", () => {
      events.close();
      if (!leaving) window.location.replace(window.location.pathname);
    });
    // The server could not follow the job (Redis away, the job vanished): say so and stop; a reload tries again.
    events.addEventListener("problem", (e) => {
      events.close();
      const note = document.createElement("p");
      note.className = "flash bad";
      note.setAttribute("role", "alert");
      note.textContent = "Live progress stopped: " + JSON.parse(e.data).detail + " (reload to try again)";
      one.prepend(note);
    });
  }

  const table = document.querySelector("[data-live-jobs]");
  if (table) {
    const refresh = async () => {
      try {
        const reply = await fetch("/v1/jobs?limit=100", { headers: { Accept: "application/json" } });
        if (!reply.ok) return;
        const page = await reply.json();
        for (const job of page.jobs) {
          const row = table.querySelector('tr[data-job="' + job.id + '"]');
          if (row) paint(row, job);
        }
      } catch (err) { /* the next tick tries again */ }
    };
    setInterval(refresh, 2000);
  }
});
