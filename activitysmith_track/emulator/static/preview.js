// The emulator's preview page: long-polls /_emulator/state and draws every activity as a
// lock-screen card. Plain DOM, no dependencies, no build step; all text goes in through
// textContent, never innerHTML, because titles and messages come from whoever calls the API.
"use strict";

(function () {
  // The API colour enum, mapped to the iOS system colours in dark mode.
  const COLORS = {
    lime: "#a3e635",
    green: "#30d158",
    cyan: "#64d2ff",
    blue: "#0a84ff",
    purple: "#bf5af2",
    magenta: "#ff2dc8",
    red: "#ff453a",
    orange: "#ff9f0a",
    yellow: "#ffd60a",
    gray: "#8e8e93",
  };
  const DEFAULT_ACCENT = COLORS.blue;
  const POLL_WAIT_SECONDS = 25;
  const RETRY_MS = 1000;
  const TICK_MS = 250;

  const container = document.getElementById("activities");
  const emptyNote = document.getElementById("empty");
  const connection = document.getElementById("connection");
  const requestList = document.getElementById("request-list");
  const requestCount = document.getElementById("request-count");
  document.getElementById("api-url").textContent = location.origin + "/api";

  // Which history lists the reader opened; they stay open across redraws.
  const openHistories = new Set();
  // Activity id -> {key: its data as JSON, node: its element}, from the last drawing.
  let drawn = new Map();
  // Server time and page time at the last answer, so timers tick between answers.
  let serverNow = 0;
  let receivedAt = performance.now();
  // Seconds without an accepted request after which a live card is marked stale.
  let staleAfter = 600;

  function colorOf(name, fallback) {
    return COLORS[name] || fallback || DEFAULT_ACCENT;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function formatNumber(value) {
    if (!isNumber(value)) return String(value);
    return value.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  // A span for a number or readout that fit() may let wrap after a group separator.
  function numberNode(cls, text) {
    return el("span", { class: `${cls} breakable`, text: String(text) });
  }

  // Offer line breaks after group separators ("120,000," then "000") with <wbr>, so a value
  // that must wrap does not split between two digits. Only while wrapping: Chromium honours
  // <wbr> even under white-space: nowrap.
  function allowBreaks(node, allowed) {
    for (const span of node.querySelectorAll(".breakable")) {
      const text = span.textContent;
      if (!allowed) {
        span.textContent = text;
        continue;
      }
      const parts = text.split(/(?<=[,\s])/);
      span.replaceChildren();
      parts.forEach((part, index) => {
        span.append(part);
        if (index < parts.length - 1) span.append(el("wbr"));
      });
    }
  }

  function formatDuration(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = whole % 60;
    const ss = String(s).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  }

  function formatClock(epochSeconds) {
    const when = new Date(epochSeconds * 1000);
    const ms = String(when.getMilliseconds()).padStart(3, "0");
    return `${when.toLocaleTimeString([], { hour12: false })}.${ms}`;
  }

  function nowOnServer() {
    return serverNow + (performance.now() - receivedAt) / 1000;
  }

  // -- widgets per type ----------------------------------------------------------------------

  const MAX_SEGMENTS = 40;

  function segmented(state) {
    const total = Math.max(1, Math.floor(state.number_of_steps || 1));
    const current = Math.min(total, Math.max(0, Math.floor(state.current_step || 0)));
    const accent = colorOf(state.color);
    const stepColors = Array.isArray(state.step_colors) ? state.step_colors : [];
    const bar = el("div", { class: "segments", "data-steps": total, "data-current": current });
    // A lock screen has room for a few dozen segments; past that, draw one filled bar.
    if (total > MAX_SEGMENTS) {
      const fill = el("span", {
        class: "segment done current",
        style: { flex: `0 0 ${(100 * current) / total}%`, background: accent },
      });
      bar.append(fill, el("span", { class: "segment" }));
      return el(
        "div",
        { class: "widget widget-segmented" },
        bar,
        el("span", { class: "step-count", text: `${current}/${total}` }),
      );
    }
    for (let i = 0; i < total; i++) {
      const done = i < current;
      const isCurrent = i === current - 1;
      // The current step takes step_color; other done steps their step_colors entry.
      let color = null;
      if (done && isCurrent && state.step_color) color = colorOf(state.step_color);
      else if (done) color = colorOf(stepColors[i], accent);
      const cls = "segment" + (done ? " done" : "") + (isCurrent ? " current" : "");
      bar.append(el("span", { class: cls, style: color ? { background: color } : null }));
    }
    return el(
      "div",
      { class: "widget widget-segmented" },
      bar,
      el("span", { class: "step-count", text: `${current}/${total}` }),
    );
  }

  function progressFraction(state) {
    if (isNumber(state.percentage)) return state.percentage / 100;
    if (isNumber(state.value) && isNumber(state.upper_limit) && state.upper_limit > 0) {
      return state.value / state.upper_limit;
    }
    return 0;
  }

  function progress(state) {
    const fraction = Math.min(1, Math.max(0, progressFraction(state)));
    const percent = Math.round(fraction * 1000) / 10;
    const label = isNumber(state.percentage) || !isNumber(state.upper_limit)
      ? `${formatNumber(percent)}%`
      : `${formatNumber(state.value)} / ${formatNumber(state.upper_limit)}`;
    return el(
      "div",
      { class: "widget widget-progress" },
      el(
        "div",
        { class: "progress-track" },
        el("div", {
          class: "progress-fill",
          "data-percent": percent,
          style: { width: `${percent}%`, background: colorOf(state.color) },
        }),
      ),
      el("span", { class: "progress-label", text: label }),
    );
  }

  function metrics(state, kind) {
    const items = Array.isArray(state.metrics) ? state.metrics : [];
    const grid = el("div", {
      class: `widget widget-${kind} metrics-grid`,
      // minmax(0, 1fr): a long value must not widen its column past the card.
    style: {
      gridTemplateColumns: `repeat(${Math.min(Math.max(items.length, 1), 4)}, minmax(0, 1fr))`,
    },
    });
    for (const item of items) {
      const color = colorOf(item.color, colorOf(state.color));
      const full = formatNumber(item.value) + (item.unit ? ` ${item.unit}` : "");
      const value = el(
        "div",
        { class: "metric-value fit", title: full, style: kind === "metrics" ? { color } : null },
        numberNode("metric-number", formatNumber(item.value)),
        item.unit ? el("span", { class: "metric-unit", text: item.unit }) : null,
      );
      grid.append(
        el(
          "div",
          { class: "metric", "data-label": item.label, title: `${item.label}: ${item.value}` },
          el("div", { class: "metric-label", text: item.label }),
          value,
          kind === "metrics" ? el("div", { class: "metric-bar", style: { background: color } }) : null,
        ),
      );
    }
    return grid;
  }

  function timer(activity) {
    const info = activity.timer ||
      { elapsed: 0, running: false, ended: false, counts_down: false, duration: null };
    const node = el("div", {
      class: "timer" + (info.ended ? " ended" : info.running ? " running" : " paused"),
      "data-elapsed": info.elapsed,
      "data-running": info.running ? "true" : "false",
      "data-ended": info.ended ? "true" : "false",
      "data-counts-down": info.counts_down ? "true" : "false",
      "data-duration": info.duration,
      style: { color: colorOf(activity.state.color) },
    });
    const label = el("span", { class: "timer-label" });
    updateTimer(node, label);
    return el("div", { class: "widget widget-timer" }, node, label);
  }

  function updateTimer(node, label) {
    const running = node.dataset.running === "true";
    const elapsed = Number(node.dataset.elapsed) +
      (running ? (performance.now() - receivedAt) / 1000 : 0);
    const countsDown = node.dataset.countsDown === "true";
    const shown = countsDown ? Math.ceil(Number(node.dataset.duration) - elapsed) : elapsed;
    node.textContent = formatDuration(shown);
    if (!label) return;
    if (node.dataset.ended === "true") {
      // The final reading: what the timer showed when the activity ended.
      label.textContent = countsDown ? (shown <= 0 ? "done" : "left at the end") : "in total";
      return;
    }
    const word = countsDown ? (shown <= 0 ? "done" : "remaining") : "elapsed";
    label.textContent = running ? word : `${word} · paused`;
  }

  function widget(activity) {
    const state = activity.state;
    switch (activity.type) {
      case "segmented_progress":
        return segmented(state);
      case "progress":
        return progress(state);
      case "metrics":
      case "stats":
        return metrics(state, activity.type);
      case "timer":
        return timer(activity);
      case "alert":
        // On an alert, color tints the buttons (see actions()); the preview also marks the
        // message with it, so a colour sent without buttons is visible too.
        return el("div", {
          class: "widget widget-alert",
          "data-color": state.color || null,
          style: state.color ? { borderLeftColor: colorOf(state.color) } : null,
        }, el("p", { class: "message", text: state.message || "", title: state.message || "" }));
      case "value": {
        const text = state.value === undefined ? "" : formatNumber(state.value);
        return el("div", { class: "widget widget-value" },
          el("div", {
            class: "value-readout fit",
            title: text,
            style: { color: colorOf(state.color) },
          }, numberNode("value-text", text)));
      }
      default:
        return null;
    }
  }

  // -- the card ------------------------------------------------------------------------------

  function icon(state) {
    const spec = state.icon;
    if (!spec || !spec.symbol) return null;
    const letter = spec.symbol.replace(/[^A-Za-z0-9]/g, "").charAt(0).toUpperCase() || "?";
    return el("span", {
      class: "icon",
      title: spec.symbol,
      "data-symbol": spec.symbol,
      text: letter,
      style: { background: colorOf(spec.color, colorOf(state.color)) },
    });
  }

  function badge(state) {
    const spec = state.badge;
    if (!spec || !spec.title) return null;
    return el("span", {
      class: "badge",
      text: spec.title,
      title: spec.title,
      style: { background: colorOf(spec.color, COLORS.gray) },
    });
  }

  function actions(activity) {
    const row = el("div", { class: "actions" });
    const tint = activity.type === "alert" ? colorOf(activity.state.color, null) : null;
    for (const [spec, cls] of [[activity.action, "primary"], [activity.secondary_action, "secondary"]]) {
      if (!spec || !spec.title) continue;
      const where = spec.type === "webhook" ? `webhook ${spec.method || "POST"} ${spec.url}` : spec.url;
      let style = null;
      if (tint) style = cls === "primary" ? { background: tint } : { color: tint };
      row.append(el("span", {
        class: `action ${cls}`,
        text: spec.title,
        title: where,
        "data-action-type": spec.type,
        style,
      }));
    }
    return row.children.length ? row : null;
  }

  function card(activity) {
    const state = activity.state || {};
    return el(
      "div",
      { class: "card" },
      el(
        "div",
        { class: "head" },
        icon(state),
        el(
          "div",
          { class: "texts" },
          el("div", { class: "title", text: state.title || "", title: state.title || "" }),
          state.subtitle
            ? el("div", { class: "subtitle", text: state.subtitle, title: state.subtitle })
            : null,
        ),
        badge(state),
      ),
      widget(activity),
      actions(activity),
    );
  }

  function statusLine(activity) {
    const line = el("div", { class: "meta" });
    const ended = activity.status === "ended";
    line.append(el("span", {
      class: "status-pill " + (ended ? "ended" : "live"),
      text: ended ? "Ended" : "Live",
    }));
    line.append(el("span", { class: "kind", text: activity.type || "?" }));
    if (activity.stream_key) {
      line.append(el("span", { class: "stream", text: activity.stream_key, title: "stream key" }));
    }
    if (!ended) {
      // Text filled in by tick(): "updated 3 min ago", and a stale marker past the threshold.
      line.append(el("span", { class: "updated", "data-updated-at": activity.updated_at }));
      line.append(el("span", {
        class: "stale-marker",
        text: "stale",
        hidden: !activity.stale,
      }));
    }
    if (ended && activity.dismiss_at !== null) {
      line.append(el("span", {
        class: "dismissal",
        "data-dismiss-at": activity.dismiss_at,
        "data-ended": `ended at ${formatClock(activity.ended_at)} (${activity.end_reason || "ended"})`,
      }));
    }
    return line;
  }

  function history(activity) {
    const entries = activity.history || [];
    const box = el("details", { class: "history", open: openHistories.has(activity.id) });
    box.addEventListener("toggle", () => {
      if (box.open) openHistories.add(activity.id);
      else openHistories.delete(activity.id);
    });
    box.append(el("summary", { text: `History (${entries.length})` }));
    const list = el("ol", { reversed: true });
    for (const entry of entries.slice().reverse()) {
      const cls = entry.refused ? "refused" : entry.ignored ? "ignored" : "accepted";
      const item = el(
        "li",
        { class: cls, "data-status": entry.status, "data-endpoint": entry.endpoint },
        el("time", { text: formatClock(entry.time) }),
        el("code", { class: "endpoint", text: entry.endpoint }),
        el("span", { class: "status-code", text: String(entry.status) }),
        el("span", { class: "summary", text: entry.summary, title: entry.summary }),
        entry.fault ? el("span", { class: "fault", text: `fault: ${entry.fault}` }) : null,
        entry.warning ? el("span", { class: "warning", text: entry.warning }) : null,
        ...(entry.notes || []).map((note) => el("span", { class: "note", text: `note: ${note}` })),
        entry.sent ? el("code", { class: "sent", text: entry.sent, title: entry.sent }) : null,
      );
      list.append(item);
    }
    box.append(list);
    return box;
  }

  function activityNode(activity) {
    const node = el(
      "article",
      {
        class: "activity" + (activity.status === "ended" ? " ended" : "") +
          (activity.dismissed ? " dismissed" : "") + (activity.stale ? " stale" : ""),
        "data-activity-id": activity.id,
        "data-type": activity.type,
        "data-status": activity.status,
      },
      statusLine(activity),
      card(activity),
      history(activity),
    );
    return node;
  }

  function requestItem(request) {
    const status = request.status === null ? "-" : String(request.status);
    return el(
      "li",
      { class: request.refused ? "refused" : "accepted", "data-status": status },
      el("time", { text: formatClock(request.time) }),
      el("code", { class: "endpoint", text: `${request.method} ${request.path}` }),
      el("span", { class: "status-code", text: status }),
      el("span", { class: "summary", text: request.summary, title: request.summary }),
      request.fault ? el("span", { class: "fault", text: `fault: ${request.fault}` }) : null,
      ...(request.notes || []).map((note) => el("span", { class: "note", text: `note: ${note}` })),
    );
  }

  // -- making values fit ---------------------------------------------------------------------

  const FIT_MIN_PX = 9;

  // A value too wide for its box shrinks, one pixel at a time, down to FIT_MIN_PX; if it is
  // still too wide it wraps. It is never cut: the full value also shows on hover (title).
  function fit(node) {
    node.style.fontSize = "";
    node.classList.remove("wrapped");
    allowBreaks(node, false);
    if (node.scrollWidth <= node.clientWidth) return;
    let size = parseFloat(getComputedStyle(node).fontSize);
    while (size > FIT_MIN_PX && node.scrollWidth > node.clientWidth) {
      size -= 1;
      node.style.fontSize = `${size}px`;
    }
    if (node.scrollWidth > node.clientWidth) {
      node.classList.add("wrapped");
      allowBreaks(node, true);
    }
  }

  function formatAgo(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 5) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  }

  // -- drawing and ticking -------------------------------------------------------------------

  function render(data) {
    serverNow = data.now;
    staleAfter = data.stale_after;
    receivedAt = performance.now();
    // Cards whose data did not change keep their element, so nothing under the reader's
    // pointer (or a test's reference) is swapped out needlessly.
    const next = new Map();
    const nodes = data.activities.map((activity) => {
      const key = JSON.stringify(activity);
      const known = drawn.get(activity.id);
      const node = known && known.key === key ? known.node : activityNode(activity);
      next.set(activity.id, { key, node });
      return node;
    });
    drawn = next;
    container.replaceChildren(...nodes);
    for (const node of container.querySelectorAll(".fit")) fit(node);
    emptyNote.hidden = data.activities.length > 0;
    requestList.replaceChildren(...data.requests.map(requestItem));
    requestCount.textContent = String(data.requests.length);
    document.body.dataset.version = String(data.version);
    tick();
  }

  function tick() {
    for (const node of container.querySelectorAll(".timer")) {
      updateTimer(node, node.parentElement.querySelector(".timer-label"));
    }
    const now = nowOnServer();
    for (const node of container.querySelectorAll(".updated")) {
      const quiet = now - Number(node.dataset.updatedAt);
      node.textContent = `updated ${formatAgo(quiet)}`;
      node.title = `last accepted request at ${formatClock(Number(node.dataset.updatedAt))}`;
      const stale = quiet >= staleAfter;
      const article = node.closest(".activity");
      article.classList.toggle("stale", stale);
      const marker = article.querySelector(".stale-marker");
      marker.hidden = !stale;
      marker.title = stale
        ? `no update for ${formatAgo(quiet).replace(" ago", "")}: its job may have stopped ` +
          "without ending it"
        : "";
    }
    for (const node of container.querySelectorAll(".dismissal")) {
      const at = Number(node.dataset.dismissAt);
      const left = at - now;
      const article = node.closest(".activity");
      const clock = formatClock(at).slice(0, 8);
      if (left > 0) {
        node.textContent = `dismissed in ${formatDuration(left)}`;
        node.title = `${node.dataset.ended}; dismissed at ${clock}`;
      } else {
        node.textContent = `dismissed at ${clock}`;
        node.title = node.dataset.ended;
        article.classList.add("dismissed");
      }
    }
  }

  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }

  async function poll() {
    let version = null;
    for (;;) {
      const query = version === null ? "" : `?after=${version}&wait=${POLL_WAIT_SECONDS}`;
      try {
        const answer = await fetch(`/_emulator/state${query}`, { cache: "no-store" });
        if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
        const data = await answer.json();
        setConnection("live", "live");
        if (data.version !== version) {
          version = data.version;
          render(data);
        }
      } catch (error) {
        setConnection("offline", "emulator not reachable");
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }

  setInterval(tick, TICK_MS);
  poll();
})();
