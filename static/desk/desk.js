/* riskdesk live desk: one WebSocket (/ws/desk/) tells the page WHAT changed; htmx re-fetches the
 * same partial templates the server rendered the page with, so a row looks the same on first load
 * and on every update. After a drop the socket reconnects with backoff and every live partial is
 * reloaded, so nothing that happened while it was down is missed.
 *
 * Elements opt in with data-live="risk alert" (the events they follow) plus hx-get and
 * hx-trigger="desk-refresh"; hx-sync="this:queue last" coalesces a burst into one request. */
(function () {
  "use strict";

  // Selects that apply at once (language, filters), on every page including sign-in.
  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-autosubmit]")) e.target.form.submit();
    else if (e.target.tagName === "SELECT" && e.target.form && e.target.form.matches("[data-autosubmit-form]")) {
      e.target.form.submit();
    }
  });

  const body = document.body;
  if (!body.classList.contains("desk")) return;

  const T = JSON.parse(document.getElementById("desk-i18n").textContent);
  const STALE_AFTER_S = parseFloat(body.dataset.staleAfterS || "5");
  const MIN_GAP_MS = 250; // per element: a tick storm must not become a request storm
  const LANG = (body.dataset.lang || "en").replace(/^zh-hans$/i, "zh-Hans");
  const TZ = body.dataset.tz || "UTC";
  // Server and browser clocks differ; ages are computed on the server's clock.
  const skewMs = parseInt(body.dataset.serverNowMs || "0", 10) - Date.now();
  const serverNow = () => Date.now() + skewMs;

  const desk = (window.desk = { socket: null, events: 0, reconnects: 0 });

  // ------------------------------------------------------------------ formatting
  const numberFormat = (digits) =>
    new Intl.NumberFormat(LANG, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const money = numberFormat(2);
  const pct1 = numberFormat(1);
  const timeFormat = new Intl.DateTimeFormat(LANG, { timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false });
  const fill = (template, n) => template.replace("%(n)s", n);

  function ageText(seconds) {
    if (seconds < 10) return fill(T.age_s, numberFormat(1).format(seconds));
    if (seconds < 120) return fill(T.age_s, Math.floor(seconds));
    if (seconds < 7200) return fill(T.age_min, Math.floor(seconds / 60));
    if (seconds < 172800) return fill(T.age_h, Math.floor(seconds / 3600));
    return fill(T.age_d, Math.floor(seconds / 86400));
  }

  // Every second: ages count up. The market feed (marks every second) turns stale by its age alone,
  // even if the socket is silent (a dead feed sends nothing, so silence must look alarming); when it
  // does, every live figure on the page is marked stale with it. Account figures do not go stale by
  // age: a quiet account is not republished, and the server's verdict (is-stale) covers the rest.
  function tick() {
    const now = serverNow();
    let marketOld = false;
    document.querySelectorAll("[data-since-ms]").forEach((el) => {
      const age = Math.max(0, (now - parseInt(el.dataset.sinceMs, 10)) / 1000);
      const ageEl = el.querySelector(".age");
      if (ageEl) ageEl.textContent = ageText(age);
      if (el.hasAttribute("data-stale-watch")) {
        const old = age > STALE_AFTER_S;
        el.classList.toggle("is-old", old);
        const label = el.querySelector(".fresh-label");
        if (label && old) label.textContent = T.stale;
        marketOld = marketOld || old;
      }
    });
    body.classList.toggle("market-stale", marketOld);
    showConn();
    if (marketOld) document.querySelectorAll(".fresh.src-live .fresh-label").forEach((l) => (l.textContent = T.stale));
  }
  setInterval(tick, 1000);

  // ------------------------------------------------------------------ connection indicator
  const conn = document.getElementById("conn");
  function setConn(state) {
    body.dataset.conn = state;
    showConn();
  }

  // The pill says "Live" only when the socket is up AND no feed is stale: a live socket that
  // carries stale figures must not look healthy (the strip's verdict, or the market feed's age).
  function anyFeedStale() {
    return body.classList.contains("market-stale") || !!document.querySelector("#status .feeds.has-stale");
  }
  function showConn() {
    let state = body.dataset.conn || "connecting";
    if (state === "live" && anyFeedStale()) state = "stale";
    if (conn.dataset.state === state) return;
    conn.dataset.state = state;
    conn.querySelector(".conn-label").textContent = T["conn_" + state] || state;
  }

  // ------------------------------------------------------------------ refreshing partials
  const lastFired = new WeakMap();
  const pending = new WeakMap();

  function busy(el) {
    // Someone is typing a note, reading an open form or a confirmation: do not pull the table from under them.
    return el.querySelector("details[open]") || el.contains(document.activeElement) || document.querySelector("dialog[open]");
  }

  function refresh(el) {
    if (pending.get(el)) return;
    if (busy(el)) {
      el.dataset.dirty = "1";
      return;
    }
    const wait = Math.max(0, (lastFired.get(el) || 0) + MIN_GAP_MS - Date.now());
    pending.set(el, true);
    setTimeout(() => {
      pending.delete(el);
      lastFired.set(el, Date.now());
      delete el.dataset.dirty;
      window.htmx.trigger(el, "desk-refresh");
    }, wait);
  }

  function refreshAll(kind) {
    document.querySelectorAll("[data-live]").forEach((el) => {
      if (kind === "*" || el.dataset.live.split(/\s+/).includes(kind)) refresh(el);
    });
  }
  desk.refreshAll = () => refreshAll("*");

  // A closed note form or a blurred input releases the refresh it held back.
  document.addEventListener(
    "toggle",
    (e) => {
      const el = e.target.closest && e.target.closest("[data-live][data-dirty]");
      if (el && !e.target.open) refresh(el);
    },
    true
  );
  document.addEventListener("focusout", () => {
    setTimeout(() => document.querySelectorAll("[data-live][data-dirty]").forEach(refresh), 0);
  });

  // ------------------------------------------------------------------ the socket
  let attempt = 0;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${body.dataset.wsPath}`);
    desk.socket = socket;
    socket.onopen = () => {
      attempt = 0;
      setConn("live");
      // The page (or the last partials) may predate the socket: reload a snapshot of everything live.
      refreshAll("*");
    };
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      desk.events += 1;
      if (event.type === "risk.changed" || event.type === "position.changed") refreshAll("risk");
      else if (event.type === "alert.changed") refreshAll("alert");
    };
    socket.onclose = (close) => {
      if (desk.socket !== socket) return;
      if (close.code === 4401) {
        setConn("signedout");
        location.assign(`${body.dataset.loginUrl}?next=${encodeURIComponent(location.pathname + location.search)}`);
        return;
      }
      if (close.code === 4403) {
        setConn("forbidden");
        return;
      }
      setConn("reconnecting");
      desk.reconnects += 1;
      // Exponential backoff with jitter, capped: a restarted server is not hit by every desk at once.
      const delay = Math.min(8000, 300 * 2 ** attempt) * (0.8 + Math.random() * 0.4);
      attempt += 1;
      setTimeout(connect, delay);
    };
  }

  // ------------------------------------------------------------------ charts (overview)
  const charts = {};
  const css = (name) => getComputedStyle(body).getPropertyValue(name).trim();

  // At or past 100 % the exchange liquidates; the figures cap the ratio at a 10,000 % sentinel
  // that nobody should read as a number.
  const ratioText = (ratio) => (ratio >= 1 ? T.ratio_liquidated : pct1.format(ratio * 100) + "%");

  function gaugeOption(ratio, stale, warn, crit, liquidated) {
    // A liquidated account is never green: it may read 0 % (flat) while the loss is the news.
    const value = liquidated ? 100 : Math.min(100, Math.max(0, ratio * 100));
    const bands = liquidated
      ? [[1, css("--danger")]]
      : [
          [warn, css("--safe")],
          [crit, css("--warn")],
          [1, css("--danger")],
        ];
    return {
      animation: false,
      series: [
        {
          type: "gauge",
          min: 0,
          max: 100,
          startAngle: 200,
          endAngle: -20,
          radius: "100%",
          center: ["50%", "62%"],
          axisLine: {
            lineStyle: { width: 10, color: bands },
          },
          pointer: { width: 4, length: "60%", itemStyle: { color: stale ? css("--muted") : css("--ink") } },
          splitNumber: 4,
          axisTick: { show: false },
          splitLine: { length: 6, distance: 2, lineStyle: { color: "#fff", width: 2 } },
          axisLabel: { show: false },
          detail: {
            valueAnimation: false,
            fontSize: 14,
            offsetCenter: [0, "28%"],
            color: liquidated ? css("--danger") : stale ? css("--muted") : css("--ink"),
            formatter: () => (liquidated ? T.liquidated : ratioText(ratio)),
          },
          title: { show: true, offsetCenter: [0, "55%"], fontSize: 10, color: css("--muted") },
          data: [{ value, name: T.margin_ratio }],
        },
      ],
    };
  }

  function chartFor(el) {
    if (!el) return null;
    const existing = window.echarts.getInstanceByDom(el);
    return existing || window.echarts.init(el, null, { renderer: "canvas" });
  }

  function updateGauges(data) {
    data.gauges.forEach((g) => {
      const chart = chartFor(document.getElementById(`gauge-${g.id}`));
      if (chart) {
        chart.setOption(gaugeOption(parseFloat(g.ratio), g.stale, parseFloat(g.warn), parseFloat(g.crit), !!g.liquidated));
      }
      const el = document.getElementById(`gauge-${g.id}`);
      if (el) el.dataset.liquidated = g.liquidated ? "1" : "0";
    });
  }

  function updateExposure(data) {
    const chart = chartFor(document.getElementById("exposure-chart"));
    if (!chart) return;
    const symbols = data.exposure.map((e) => e.symbol);
    chart.setOption({
      animation: false,
      grid: { left: 80, right: 16, top: 28, bottom: 24 },
      legend: { top: 0, textStyle: { color: css("--muted") } },
      tooltip: { trigger: "axis", valueFormatter: (v) => money.format(v) },
      xAxis: { type: "value", axisLabel: { formatter: (v) => money.format(v / 1000) + "k", color: css("--muted") } },
      yAxis: { type: "category", data: symbols, axisLabel: { color: css("--ink") } },
      series: [
        { name: T.long, type: "bar", stack: "n", data: data.exposure.map((e) => parseFloat(e.long)), itemStyle: { color: css("--long") } },
        { name: T.short, type: "bar", stack: "n", data: data.exposure.map((e) => parseFloat(e.short)), itemStyle: { color: css("--short") } },
      ],
    });
  }

  const pnl = { series: new Map(), chart: null };
  const PNL_KEEP = 3000; // points per account kept in the browser

  function initPnl() {
    const source = document.getElementById("pnl-data");
    if (!source) return;
    const data = JSON.parse(source.textContent);
    data.series.forEach((s) =>
      pnl.series.set(s.account_id, {
        name: s.name,
        baseline: parseFloat(s.baseline),
        points: s.points.map(([t, v]) => [t, parseFloat(v)]),
      })
    );
    pnl.chart = chartFor(document.getElementById("pnl-chart"));
    drawPnl();
  }

  function drawPnl() {
    if (!pnl.chart) return;
    pnl.chart.setOption(
      {
        animation: false,
        grid: { left: 64, right: 16, top: 28, bottom: 28 },
        legend: { top: 0, type: "scroll", textStyle: { color: css("--muted") } },
        tooltip: {
          trigger: "axis",
          valueFormatter: (v) => money.format(v),
          axisPointer: { label: { formatter: (p) => timeFormat.format(new Date(p.value)) } },
        },
        xAxis: {
          type: "time",
          minInterval: 60000, // the labels show minutes: never two ticks within one
          axisLabel: { formatter: (v) => timeFormat.format(new Date(v)), color: css("--muted"), hideOverlap: true },
        },
        yAxis: { type: "value", axisLabel: { formatter: (v) => money.format(v), color: css("--muted") } },
        series: [...pnl.series.values()].map((s) => ({
          name: s.name,
          type: "line",
          showSymbol: false,
          data: s.points,
        })),
      },
      { replaceMerge: ["series"] }
    );
  }

  function appendPnl(data) {
    let changed = false;
    Object.entries(data.live_points).forEach(([id, [at, marginBalance]]) => {
      const s = pnl.series.get(parseInt(id, 10));
      if (!s || !at) return;
      const last = s.points[s.points.length - 1];
      if (last && last[0] >= at) return;
      s.points.push([at, parseFloat(marginBalance) - s.baseline]);
      if (s.points.length > PNL_KEEP) s.points.splice(0, s.points.length - PNL_KEEP);
      changed = true;
    });
    if (changed) drawPnl();
  }

  function updateOverview() {
    const source = document.getElementById("overview-data");
    if (!source || !window.echarts) return;
    const data = JSON.parse(source.textContent);
    updateGauges(data);
    updateExposure(data);
    appendPnl(data);
  }

  window.addEventListener("resize", () =>
    document.querySelectorAll(".gauge, .chart").forEach((el) => {
      const chart = window.echarts && window.echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    })
  );

  // ------------------------------------------------------------------ page wiring
  document.addEventListener("htmx:afterSwap", (e) => {
    tick(); // also re-reads the strip's stale verdict for the connection pill
    if (e.detail.target.id === "overview-live") updateOverview();
    if (e.detail.target.id === "dialog") {
      const dialog = e.detail.target;
      if (!dialog.open) dialog.showModal();
    }
  });

  // A failed partial (server restarting) is not an error for the user: the socket's reconnect reloads it.
  document.addEventListener("htmx:responseError", () => setConn(body.dataset.conn === "live" ? "live" : "reconnecting"));
  document.addEventListener("htmx:sendError", () => {});

  // Links that open a confirmation in the dialog. Delegated from the document: their row may be
  // re-rendered by a live refresh between the press and the request, and the press must not be lost.
  document.addEventListener("click", (e) => {
    const opener = e.target.closest("a[data-dialog]");
    if (opener) {
      e.preventDefault();
      window.htmx.ajax("GET", opener.getAttribute("href"), { target: "#dialog", swap: "innerHTML" });
      return;
    }
    const closer = e.target.closest("[data-close-dialog]");
    const dialog = closer && closer.closest("dialog");
    if (dialog) {
      e.preventDefault();
      dialog.close();
    }
  });
  const dialog = document.getElementById("dialog");
  dialog.addEventListener("close", () => {
    dialog.innerHTML = "";
    document.querySelectorAll("[data-live][data-dirty]").forEach(refresh);
  });

  document.addEventListener("DOMContentLoaded", () => {
    tick();
    if (window.echarts) {
      initPnl();
      updateOverview();
    }
    connect();
  });
})();
