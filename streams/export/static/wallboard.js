/* kefu-pulse wall-board. Vanilla JS, no build step, no external requests.
 *
 * The worker pushes a board state over Server-Sent Events (wallboard/events) about once a
 * second; this script only renders it. Waits count up locally between pushes (from
 * oldest_since and the server's clock), and the board says "data is stale" when the stream
 * drops, goes quiet, or the worker reports that its own snapshot or input is behind.
 */
(function () {
  "use strict";

  var I18N = {
    zh: {
      html_lang: "zh-CN",
      title: "客服实时看板",
      waiting: "等待中",
      people_unit: "人",
      longest_wait: "最长等待",
      p90_5m: "5分钟 P90 响应",
      within_n: "{n}秒内回复占比 · 今日",
      within_mixed: "警戒线内回复占比 · 今日",
      reply_rate_today: "回复率 · 今日",
      sales_today: "销售额 · 今日",
      conversion_today: "询单转化率 · 今日",
      sec: "秒",
      queue: "未分配排队 {n} 人",
      agents_waiting: "{n} 位坐席有人等待",
      nobody_waiting: "无人等待",
      slowest: "最慢：{name}",
      rounds_5m: "近5分钟 {n} 轮",
      missed: "未回复 {n} 人",
      resolution: "解决率 {pct}%",
      rounds_today: "今日 {n} 轮",
      slo: "目标 ≥95%",
      replied: "今日已回复买家",
      no_rounds: "暂无回复",
      tile_waiting: "等待",
      tile_oldest: "最长等待",
      tile_p50: "5分钟 P50",
      tile_p90: "P90",
      tile_mean: "今日均值",
      tile_reply: "回复率",
      more: "其余 {n} 位坐席",
      more_ok: "均已显示最严重的坐席",
      no_agents: "暂无坐席数据",
      all_shops: "全部店铺",
      all_teams: "全部团队",
      count_crit: "超时 {n}",
      count_warn: "偏慢 {n}",
      count_ok: "正常 {n}",
      conn_live: "实时",
      conn_connecting: "连接中…",
      conn_stale: "已过期",
      stale_title: "数据已过期",
      stale_disconnected: "与看板服务的连接已中断，正在重连",
      stale_silent: "已 {n} 没有收到更新",
      stale_snapshot_old: "服务端数据停在 {n} 前",
      stale_lagging: "数据处理落后 {n}",
      stale_not_ready: "服务正在恢复数据",
      stale_broker_unreachable: "无法连接消息队列（Kafka），数据未更新",
      last_update: "最后更新 {t}",
      legend_ok: "达标",
      legend_warn: "P90 超 {w} 或有人等待超 {w}",
      legend_crit: "P90 超 {c} 或有人等待超 {p}",
      legend_warn_generic: "P90 超警戒线",
      legend_crit_generic: "P90 超考核线或等待超时",
      ads_today: "今日广告/骚扰买家 {n}",
      updated: "更新于 {t}",
      st_online: "在线", st_busy: "忙碌", st_away: "离开", st_offline: "离线", st_none: "未知",
      agents_online: "在线坐席",
      room_sub: "忙碌 {b} · 排队 {q} / 可接待 {f}",
      drill_title: "{name} · 等待中的买家 {n} 人",
      drill_close: "点击任意处关闭 · Esc",
      drill_loading: "加载中…",
      drill_none: "当前无人等待",
      drill_token: "查看等待中的买家需要读取令牌：请用 ?token=（KEFU_READ_TOKEN）打开看板",
      drill_error: "无法加载等待列表",
      drill_unknown: "（未知买家）",
      drill_more: "另有 {n} 人未列出",
    },
    en: {
      html_lang: "en",
      title: "Customer service — live",
      waiting: "Buyers waiting",
      people_unit: "",
      longest_wait: "Longest wait",
      p90_5m: "5m p90 response",
      within_n: "Within {n}s today",
      within_mixed: "Within line today",
      reply_rate_today: "Reply rate today",
      sales_today: "Sales today",
      conversion_today: "Conversion today",
      sec: "s",
      queue: "{n} in unassigned queue",
      agents_waiting: "{n} agents with buyers waiting",
      nobody_waiting: "nobody waiting",
      slowest: "slowest: {name}",
      rounds_5m: "{n} rounds in 5m",
      missed: "{n} missed",
      resolution: "resolved {pct}%",
      rounds_today: "{n} rounds",
      slo: "target 95%",
      replied: "replied buyers today",
      no_rounds: "no replies yet",
      tile_waiting: "Waiting",
      tile_oldest: "Longest",
      tile_p50: "5m p50",
      tile_p90: "p90",
      tile_mean: "Today mean",
      tile_reply: "Reply",
      more: "{n} more agents",
      more_ok: "worst shown first",
      no_agents: "No agent data yet",
      all_shops: "all shops",
      all_teams: "all teams",
      count_crit: "Red {n}",
      count_warn: "Amber {n}",
      count_ok: "Green {n}",
      conn_live: "live",
      conn_connecting: "connecting…",
      conn_stale: "stale",
      stale_title: "Data is stale",
      stale_disconnected: "connection to the worker lost, reconnecting",
      stale_silent: "no update for {n}",
      stale_snapshot_old: "worker data is {n} old",
      stale_lagging: "worker is {n} behind its input",
      stale_not_ready: "worker is recovering its state",
      stale_broker_unreachable: "worker cannot reach the broker (Kafka); numbers are not updating",
      last_update: "last update {t}",
      legend_ok: "on target",
      legend_warn: "p90 over {w} or a buyer waiting over {w}",
      legend_crit: "p90 over {c} or a buyer waiting over {p}",
      legend_warn_generic: "p90 over warning line",
      legend_crit_generic: "p90 over critical line, or waiting too long",
      ads_today: "ad/spam buyers today {n}",
      updated: "updated {t}",
      st_online: "online", st_busy: "busy", st_away: "away", st_offline: "offline",
      st_none: "no status",
      agents_online: "Agents online",
      room_sub: "{b} busy · queue {q} / free slots {f}",
      drill_title: "{name} · {n} buyers waiting",
      drill_close: "tap anywhere or press Esc to close",
      drill_loading: "loading…",
      drill_none: "nobody is waiting now",
      drill_token: "Waiting buyers need the read token: open the board with ?token= (KEFU_READ_TOKEN)",
      drill_error: "could not load the waiting list",
      drill_unknown: "(unknown buyer)",
      drill_more: "{n} more not listed",
    },
  };

  var params = new URLSearchParams(window.location.search);
  var lang = (params.get("lang") || "").toLowerCase().indexOf("en") === 0 ? "en" : "zh";
  var T = I18N[lang];
  var SILENT_MS = 5000; // the worker pushes every second: 5 s of silence is a dead stream
  var DROP_GRACE_MS = 3000; // a reconnect within this is a blip, not stale data
  var startedAt = Date.now();

  function t(key, vars) {
    var s = Object.prototype.hasOwnProperty.call(T, key) ? T[key] : key;
    if (vars) {
      Object.keys(vars).forEach(function (k) {
        s = s.split("{" + k + "}").join(String(vars[k]));
      });
    }
    return s;
  }

  function $(id) { return document.getElementById(id); }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setClass(el, base, extra) {
    var cls = extra ? base + " " + extra : base;
    if (el.className !== cls) el.className = cls;
  }

  // ---- formatting --------------------------------------------------------------------------

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function clockText(epochSeconds) {
    var d = new Date(epochSeconds * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  // A wait counting up: "45" + unit under a minute, then m:ss, then h:mm:ss.
  function waitParts(s) {
    if (s === null || s === undefined || !isFinite(s)) return ["–", ""];
    s = Math.max(0, Math.floor(s));
    if (s < 60) return [String(s), T.sec];
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return [h ? h + ":" + pad2(m) + ":" + pad2(sec) : m + ":" + pad2(sec), ""];
  }

  // A response time: one decimal under 10 s, whole seconds under a minute, then m:ss.
  function rtParts(s) {
    if (s === null || s === undefined || !isFinite(s)) return ["–", ""];
    if (s < 9.95) return [s.toFixed(1), T.sec];
    if (s < 59.5) return [String(Math.round(s)), T.sec];
    return waitParts(Math.round(s));
  }

  function rtText(s) { var p = rtParts(s); return p[0] + p[1]; }

  function durationText(s) { var p = waitParts(s); return p[0] + p[1]; }

  function pct(r) {
    if (r === null || r === undefined || !isFinite(r)) return "–";
    var v = r * 100;
    return v >= 99.95 ? "100" : v.toFixed(1);
  }

  function moneyText(v) {
    if (v === null || v === undefined) return "–";
    var n = Number(v);
    if (!isFinite(n)) return String(v);
    if (lang === "zh" && n >= 10000) return "¥" + (n / 10000).toFixed(n >= 1e6 ? 0 : 1) + "万";
    return "¥" + Math.round(n).toLocaleString("en-US");
  }

  // ---- status (same rules as the worker: wallboard.py _status) -----------------------------

  var SEV = { ok: 0, warn: 1, crit: 2 };

  function statusFor(p90, wait, lines) {
    if (wait > lines.page_wait || (p90 !== null && p90 > lines.critical)) return "crit";
    if (wait > lines.warning || (p90 !== null && p90 > lines.warning)) return "warn";
    return "ok";
  }

  function rtClass(v, lines) {
    if (v === null || v === undefined || !lines) return "";
    if (v > lines.critical) return "v-crit";
    if (v > lines.warning) return "v-warn";
    return "";
  }

  // ---- state -------------------------------------------------------------------------------

  var board = null;          // last board state from the worker
  var offsetMs = 0;          // server clock − client clock at the last message
  var lastMsgAt = 0;         // client time of the last message
  var connected = false;
  var droppedAt = 0;         // client time the stream last failed
  var es = null;
  var tiles = {};            // id -> {el, refs}
  var order = [];            // ids in DOM order
  var moreTile = null;
  var layoutKey = "";

  function serverNow() {
    if (!board) return Date.now() / 1000;
    if (board.clock === "event") return board.now; // replay: time moves with the events only
    return (Date.now() + offsetMs) / 1000;
  }

  // ---- connection --------------------------------------------------------------------------

  function eventsUrl() {
    var q = new URLSearchParams();
    ["shop", "team", "token"].forEach(function (k) {
      params.getAll(k).forEach(function (v) { q.append(k, v); });
    });
    var s = q.toString();
    return "wallboard/events" + (s ? "?" + s : "");
  }

  function connect() {
    if (es) es.close();
    es = new EventSource(eventsUrl());
    es.onopen = function () { connected = true; droppedAt = 0; };
    es.onmessage = function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      connected = true;
      droppedAt = 0;
      board = data;
      lastMsgAt = Date.now();
      offsetMs = data.now * 1000 - lastMsgAt;
      render();
    };
    es.onerror = function () {
      if (connected || !droppedAt) droppedAt = Date.now();
      connected = false;
      tick();
      if (es.readyState === EventSource.CLOSED) {
        // Refused (e.g. 401) or not an event stream: the browser gives up, so we retry.
        window.setTimeout(connect, 3000);
      }
    };
  }

  function staleReason() {
    var now = Date.now();
    if (!board) return now - startedAt > SILENT_MS ? "disconnected" : null;
    if (!connected && droppedAt && now - droppedAt > DROP_GRACE_MS) return "disconnected";
    if (now - lastMsgAt > SILENT_MS) return connected ? "silent" : "disconnected";
    return board.stale || null;
  }

  // ---- rendering ---------------------------------------------------------------------------

  function applyStatic() {
    document.documentElement.lang = T.html_lang;
    document.title = T.title;
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (el) {
      setText(el, t(el.getAttribute("data-i18n")));
    });
  }

  function setKpi(id, status) {
    setClass($("kpi-" + id), "kpi", status ? "is-" + status : "");
  }

  function setNum(id, parts) {
    setText($("v-" + id), parts[0]);
    var u = $("u-" + id);
    if (u) setText(u, parts[1]);
  }

  function renderHeader() {
    var h = board.header;
    var now = serverNow();

    setText($("v-waiting"), String(h.waiting));
    var withWaiting = board.agents.filter(function (a) { return a.waiting > 0; }).length;
    setText($("s-waiting"), h.queue_waiting > 0 ? t("queue", { n: h.queue_waiting })
      : t("agents_waiting", { n: withWaiting }));
    setKpi("waiting", h.queue_waiting > 0 ? "warn" : "");

    renderOldestKpi(now);

    setNum("p90", rtParts(h.p90_5m));
    setText($("s-p90"), h.p90_5m === null ? t("no_rounds")
      : t("slowest", { name: h.p90_5m_agent }) + " · " + t("rounds_5m", { n: h.rounds_5m }));
    var p90Status = "";
    if (h.p90_5m !== null && h.p90_5m_lines) {
      p90Status = h.p90_5m > h.p90_5m_lines.critical ? "crit"
        : h.p90_5m > h.p90_5m_lines.warning ? "warn" : "ok";
    }
    setKpi("p90", p90Status);

    setText($("l-within"), h.warning_line !== null
      ? t("within_n", { n: Math.round(h.warning_line) }) : t("within_mixed"));
    setText($("v-within"), pct(h.within_warning_today));
    setText($("s-within"), t("slo") + " · " + t("rounds_today", { n: h.rounds_today }));
    var w = h.within_warning_today;
    setKpi("within", w === null ? "" : w >= 0.95 ? "ok" : w >= 0.85 ? "warn" : "crit");

    setText($("v-reply"), pct(h.reply_rate_today));
    var replySub = [t("missed", { n: h.missed_today || 0 })];
    if (h.resolution_rate_today !== null && h.resolution_rate_today !== undefined) {
      replySub.push(t("resolution", { pct: pct(h.resolution_rate_today) }));
    }
    setText($("s-reply"), replySub.join(" · "));
    setKpi("reply", "");

    // Business KPIs: shown as soon as the worker sends them.
    var sales = h.sales_today, conv = h.conversion_today;
    $("kpi-sales").hidden = sales === null || sales === undefined;
    if (!$("kpi-sales").hidden) setText($("v-sales"), moneyText(sales));
    $("kpi-conversion").hidden = conv === null || conv === undefined;
    if (!$("kpi-conversion").hidden) setText($("v-conversion"), pct(conv));

    // The room: agents online, and the queue against the free slots of the online agents.
    $("kpi-room").hidden = h.agents_online === null || h.agents_online === undefined;
    if (!$("kpi-room").hidden) {
      setText($("v-room"), String(h.agents_online));
      setText($("s-room"), t("room_sub", { b: h.agents_busy, q: h.queue_waiting, f: h.free_capacity }));
      var present = h.agents_online + h.agents_busy;
      setKpi("room", h.queue_waiting > 0 && present === 0 ? "crit"
        : h.queue_waiting > h.free_capacity ? "warn" : "ok");
    }
  }

  function renderOldestKpi(now) {
    var h = board.header;
    if (h.oldest_since === null) {
      setNum("oldest", ["–", ""]);
      setText($("s-oldest"), t("nobody_waiting"));
      setKpi("oldest", "ok");
      return;
    }
    var wait = Math.max(0, now - h.oldest_since);
    setNum("oldest", waitParts(wait));
    var lines = h.oldest_lines;
    setText($("s-oldest"), "");
    setKpi("oldest", !lines ? "" : wait > lines.page_wait ? "crit"
      : wait > lines.warning ? "warn" : "ok");
  }

  function scopeText() {
    var f = board.filter;
    var shops = f.shop.length ? f.shop.join("、") :
      (board.shops.length === 1 ? board.shops[0] : t("all_shops"));
    var teams = f.team.length ? f.team.join("、") :
      (board.teams.length === 1 ? board.teams[0] : t("all_teams"));
    return shops + " · " + teams;
  }

  function renderTopbar() {
    setText($("scope"), scopeText());
    var c = board.counts;
    ["crit", "warn", "ok"].forEach(function (k) {
      var el = $("count-" + k);
      el.hidden = false;
      setText(el, t("count_" + k, { n: c[k] }));
    });
    var lines = uniqueLines();
    setText($("legend-warn"), lines ? t("legend_warn", { w: rtText(lines.warning) })
      : t("legend_warn_generic"));
    setText($("legend-crit"), lines ? t("legend_crit", {
      c: rtText(lines.critical), p: durationText(lines.page_wait),
    }) : t("legend_crit_generic"));
    var info = [];
    if (board.header.ad_buyers_today) info.push(t("ads_today", { n: board.header.ad_buyers_today }));
    if (board.snapshot_at) info.push(t("updated", { t: clockText(board.snapshot_at) }));
    setText($("footer-info"), info.join(" · "));
  }

  function uniqueLines() {
    var seen = null, same = true;
    board.agents.forEach(function (a) {
      var k = a.lines.warning + "/" + a.lines.critical + "/" + a.lines.page_wait;
      if (seen === null) seen = k; else if (seen !== k) same = false;
    });
    return same && board.agents.length ? board.agents[0].lines : null;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function makeTile(a) {
    var root = el("div", "tile");
    root.setAttribute("role", "button");
    root.setAttribute("data-id", a.id);
    root.setAttribute("data-agent", a.agent);
    root.setAttribute("data-shop", a.shop);
    var head = el("div", "tile-head");
    var dot = el("i", "st-dot");
    var name = el("span", "tile-name");
    var meta = el("span", "tile-meta");
    var load = el("span", "tile-load");
    head.appendChild(dot);
    head.appendChild(name);
    head.appendChild(meta);
    head.appendChild(load);
    var main = el("div", "tile-main");
    var c1 = el("div", "tile-cell");
    c1.appendChild(el("span", "", t("tile_waiting")));
    var waiting = el("div", "tile-num t-waiting");
    c1.appendChild(waiting);
    var c2 = el("div", "tile-cell");
    c2.appendChild(el("span", "", t("tile_oldest")));
    var oldest = el("div", "tile-num t-oldest");
    var oldestNum = el("span", "");
    var oldestUnit = el("small", "");
    oldest.appendChild(oldestNum);
    oldest.appendChild(oldestUnit);
    c2.appendChild(oldest);
    main.appendChild(c1);
    main.appendChild(c2);
    var kv1 = el("div", "kv");
    var p50 = el("b", "t-p50");
    var p90 = el("b", "t-p90");
    var s1 = el("span", "", t("tile_p50") + " ");
    s1.appendChild(p50);
    var s2 = el("span", "", t("tile_p90") + " ");
    s2.appendChild(p90);
    kv1.appendChild(s1);
    kv1.appendChild(s2);
    var kv2 = el("div", "kv");
    var mean = el("b", "t-mean");
    var reply = el("b", "t-reply");
    var s3 = el("span", "", t("tile_mean") + " ");
    s3.appendChild(mean);
    var s4 = el("span", "", t("tile_reply") + " ");
    s4.appendChild(reply);
    kv2.appendChild(s3);
    kv2.appendChild(s4);
    root.appendChild(head);
    root.appendChild(main);
    root.appendChild(kv1);
    root.appendChild(kv2);
    return {
      el: root, name: name, meta: meta, waiting: waiting, oldest: oldest,
      oldestNum: oldestNum, oldestUnit: oldestUnit, p50: p50, p90: p90, mean: mean,
      reply: reply, dot: dot, load: load, data: a,
    };
  }

  function updateTile(r, a, showShop, showTeam) {
    r.data = a;
    setText(r.name, a.name);
    var meta = [];
    if (showTeam) meta.push(a.team);
    if (showShop) meta.push(a.shop);
    setText(r.meta, meta.join(" · "));
    // Status dot and label, and the load "concurrent/max" (接待量/上限).
    var st = a.agent_status || "none";
    setClass(r.dot, "st-dot", "st-" + st);
    r.dot.title = t("st_" + st);
    setText(r.load, t("st_" + st) + " " + a.concurrent + "/" + a.max_concurrent);
    setClass(r.load, "tile-load", a.occupancy >= 1 ? "full" : "");
    setText(r.waiting, String(a.waiting));
    setClass(r.waiting, "tile-num t-waiting", a.waiting ? "" : "zero");
    setText(r.p50, rtText(a.p50_5m));
    setText(r.p90, rtText(a.p90_5m));
    setClass(r.p90, "t-p90", rtClass(a.p90_5m, a.lines));
    setText(r.mean, rtText(a.mean_today));
    setClass(r.mean, "t-mean", rtClass(a.mean_today, a.lines));
    setText(r.reply, a.reply_rate_today === null ? "–" : pct(a.reply_rate_today) + "%");
    liveTile(r, serverNow());
  }

  // The parts that move every second between pushes: the wait and the colour it implies.
  function liveTile(r, now) {
    var a = r.data;
    var wait = a.oldest_since !== null ? Math.max(0, now - a.oldest_since) : 0;
    var status = statusFor(a.p90_5m, wait, a.lines);
    if (SEV[a.status] > SEV[status]) status = a.status;
    var idle = status === "ok" && !a.rounds_5m && !a.waiting;
    setClass(r.el, "tile", "s-" + status + (idle ? " s-idle" : ""));
    if (r.el.getAttribute("data-status") !== status) r.el.setAttribute("data-status", status);
    var parts = a.oldest_since !== null ? waitParts(wait) : ["–", ""];
    setText(r.oldestNum, parts[0]);
    setText(r.oldestUnit, parts[1]);
    var hot = a.oldest_since === null ? "zero"
      : wait > a.lines.page_wait ? "hot-crit" : wait > a.lines.warning ? "hot-warn" : "";
    if (parts[0].length > 5) hot += " long"; // an hour or more: h:mm:ss must still fit
    setClass(r.oldest, "tile-num t-oldest", hot);
  }

  function layout(count) {
    var grid = $("grid");
    var W = grid.clientWidth, H = grid.clientHeight;
    var key = count + ":" + W + "x" + H;
    if (key === layoutKey) return layoutCapacity;
    layoutKey = key;
    var gap = parseFloat(window.getComputedStyle(grid).rowGap) || 8;
    var minFs = Math.max(11, window.innerHeight * 0.013);
    // Biggest text first; among layouts within 5 % of it, the one that fills the screen.
    var fit = function (n) {
      var all = [], maxFs = 0;
      for (var cols = 1; cols <= n; cols++) {
        var rows = Math.ceil(n / cols);
        var tw = (W - (cols - 1) * gap) / cols;
        var th = (H - (rows - 1) * gap) / rows;
        var fs = Math.min(th / 10.6, tw / 16);
        var tileH = th <= fs * 13 ? th : fs * 11.2;
        all.push({ cols: cols, rows: rows, fs: fs, th: tileH, used: rows * tileH });
        maxFs = Math.max(maxFs, fs);
      }
      var best = null;
      all.forEach(function (c) {
        if (c.fs >= maxFs * 0.95 && (!best || c.used > best.used + 1)) best = c;
      });
      return best;
    };
    var n = Math.max(1, count), f = fit(n), capacity = count;
    while (n > 1 && f.fs < minFs) { n -= 1; f = fit(n); capacity = n; }
    var fs = Math.min(f.fs, window.innerHeight * 0.05);
    grid.style.setProperty("--cols", String(f.cols));
    grid.style.setProperty("--fs", fs.toFixed(2) + "px");
    // f.th fills the screen unless that would leave tiles mostly empty (few agents, big TV).
    grid.style.setProperty("--tile-h", Math.min(f.th, fs * 13).toFixed(1) + "px");
    layoutCapacity = capacity;
    return capacity;
  }
  var layoutCapacity = 0;

  function renderGrid() {
    var agents = board.agents;
    var grid = $("grid");
    $("empty").hidden = agents.length > 0;
    var capacity = layout(agents.length);
    var shown = capacity < agents.length ? agents.slice(0, Math.max(0, capacity - 1)) : agents;
    var hidden = agents.slice(shown.length);
    var showShop = board.shops.length > 1;
    var showTeam = board.teams.length > 1;
    var seen = {};
    var ids = [];
    shown.forEach(function (a) {
      var r = tiles[a.id];
      if (!r) { r = tiles[a.id] = makeTile(a); bindDrill(r); }
      updateTile(r, a, showShop, showTeam);
      seen[a.id] = true;
      ids.push(a.id);
    });
    Object.keys(tiles).forEach(function (id) {
      if (!seen[id]) { tiles[id].el.remove(); delete tiles[id]; }
    });
    var sameOrder = ids.length === order.length && ids.every(function (id, i) { return order[i] === id; });
    if (!sameOrder) {
      ids.forEach(function (id) { grid.appendChild(tiles[id].el); });
      order = ids;
    }
    if (hidden.length) {
      if (!moreTile) {
        moreTile = el("div", "tile tile-more");
        moreTile.appendChild(el("div", "tile-num"));
        moreTile.appendChild(el("span", ""));
      }
      setText(moreTile.firstChild, "+" + hidden.length);
      var worst = hidden.reduce(function (m, a) { return Math.max(m, SEV[a.status]); }, 0);
      setText(moreTile.lastChild, t("more", { n: hidden.length }));
      setClass(moreTile, "tile tile-more", worst ? "s-" + (worst === 2 ? "crit" : "warn") : "");
      grid.appendChild(moreTile);
    } else if (moreTile) {
      moreTile.remove();
      moreTile = null;
    }
  }

  function render() {
    renderTopbar();
    renderHeader();
    renderGrid();
    tick();
  }

  function tick() {
    var reason = staleReason();
    var state = reason ? "stale" : board ? "live" : "connecting";
    if (document.body.getAttribute("data-state") !== state) {
      document.body.setAttribute("data-state", state);
    }
    setText($("conn-text"), t("conn_" + (state === "stale" ? "stale" : state)));
    var banner = $("stale");
    banner.hidden = state !== "stale";
    if (state === "stale") {
      var detail = "";
      if (reason === "silent" || reason === "disconnected") {
        detail = reason === "disconnected" ? t("stale_disconnected")
          : t("stale_silent", { n: durationText((Date.now() - lastMsgAt) / 1000) });
      } else if (reason === "snapshot_old") {
        detail = t("stale_snapshot_old", { n: durationText(board.now - board.snapshot_at) });
      } else if (reason === "lagging") {
        detail = t("stale_lagging", { n: durationText(board.lag_seconds) });
      } else if (reason === "not_ready") {
        detail = t("stale_not_ready");
      } else if (reason === "broker_unreachable") {
        detail = t("stale_broker_unreachable");
      }
      if (board && board.snapshot_at) {
        detail += " · " + t("last_update", { t: clockText(board.snapshot_at) });
      }
      banner.setAttribute("data-reason", reason || "");
      setText($("stale-reason"), detail);
    }
    // While stale, waits stay where the last data left them: nothing is extrapolated.
    var now = state === "stale" && board ? board.now : serverNow();
    setText($("clock"), clockText(Date.now() / 1000));
    if (board) {
      renderOldestKpi(now);
      Object.keys(tiles).forEach(function (id) { liveTile(tiles[id], now); });
    }
    liveDrill(now);
  }

  // ---- drill-down: who is waiting on one agent ---------------------------------------------
  //
  // The only place buyer ids ever reach the page. The board's pushed state never holds them;
  // they come from wallboard/waiting, which needs the read (or API) token — the board's cookie
  // or ?token= — and answers 401/403 otherwise, when the panel only says a token is needed.
  // Rows keep the server's order (longest wait first); waits count up locally like the tiles.

  var DRILL_REFRESH_MS = 5000;
  var DRILL_CLOSE_MS = 60000; // a TV must not keep showing buyer ids once nobody looks
  var drill = null; // {shop, agent, name, lines, rows, timer, closer, seq}
  var drillSeq = 0;

  function bindDrill(r) {
    r.el.addEventListener("click", function (ev) {
      ev.stopPropagation();
      openDrill(r.data);
    });
  }

  function waitingUrl(shop, agent) {
    var q = new URLSearchParams();
    q.set("shop", shop);
    q.set("agent", agent);
    var token = params.get("token");
    if (token) q.set("token", token);
    return "wallboard/waiting?" + q.toString();
  }

  function drillMessage(text) {
    var m = $("drill-msg");
    m.hidden = !text;
    setText(m, text || "");
  }

  function openDrill(a) {
    closeDrill();
    drill = { shop: a.shop, agent: a.agent, name: a.name, lines: a.lines, rows: null,
      seq: ++drillSeq };
    setText($("drill-title"), t("drill_title", { name: a.name, n: a.waiting }));
    drillMessage(t("drill_loading"));
    $("drill").hidden = false;
    loadDrill();
    drill.timer = window.setInterval(loadDrill, DRILL_REFRESH_MS);
    drill.closer = window.setTimeout(closeDrill, DRILL_CLOSE_MS);
  }

  function closeDrill() {
    if (!drill) return;
    window.clearInterval(drill.timer);
    window.clearTimeout(drill.closer);
    drill = null;
    $("drill").hidden = true;
    $("drill-list").textContent = ""; // the buyer ids leave the page with the panel
    $("drill-more").hidden = true;
    drillMessage("");
  }

  function loadDrill() {
    if (!drill) return;
    var mine = drill;
    var seq = drill.seq;
    fetch(waitingUrl(mine.shop, mine.agent), { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401 || resp.status === 403) return { denied: true };
        if (!resp.ok) throw new Error(String(resp.status));
        return resp.json();
      })
      .then(function (body) {
        if (!drill || drill.seq !== seq) return; // closed or another tile opened meanwhile
        if (body.denied) {
          window.clearInterval(drill.timer); // asking again will not help
          drill.rows = null;
          $("drill-list").textContent = "";
          drillMessage(t("drill_token"));
          return;
        }
        renderDrill(body);
      })
      .catch(function () {
        if (drill && drill.seq === seq && !drill.rows) drillMessage(t("drill_error"));
      });
  }

  function renderDrill(body) {
    var rows = body.waiting || [];
    drill.rows = rows;
    setText($("drill-title"), t("drill_title", { name: drill.name, n: body.total }));
    drillMessage(rows.length ? "" : t("drill_none"));
    var list = $("drill-list");
    list.textContent = "";
    rows.forEach(function (w) {
      var li = el("li", "drill-row");
      li.appendChild(el("span", "drill-buyer", w.buyer === null ? t("drill_unknown") : w.buyer));
      var wait = el("span", "drill-wait");
      li.appendChild(wait);
      li._since = w.since;
      list.appendChild(li);
    });
    var more = body.total - rows.length;
    $("drill-more").hidden = more <= 0;
    if (more > 0) setText($("drill-more"), t("drill_more", { n: more }));
    liveDrill(serverNow());
  }

  function liveDrill(now) {
    if (!drill || !drill.rows) return;
    Array.prototype.forEach.call($("drill-list").children, function (li) {
      var wait = Math.max(0, now - li._since);
      var span = li.lastChild;
      setText(span, durationText(wait));
      var lines = drill.lines;
      setClass(span, "drill-wait", !lines ? "" : wait > lines.page_wait ? "hot-crit"
        : wait > lines.warning ? "hot-warn" : "");
    });
  }

  function start() {
    applyStatic();
    $("drill").addEventListener("click", closeDrill);
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") closeDrill();
    });
    connect();
    window.setInterval(tick, 500);
    // The grid's room changes with the window and when the stale banner comes and goes.
    var relayout = function () { layoutKey = ""; if (board) renderGrid(); };
    if (window.ResizeObserver) new window.ResizeObserver(relayout).observe($("grid"));
    window.addEventListener("resize", relayout);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
