// The Reports page's charts: drawn with the vendored Chart.js from the tables the server rendered
// into #report-data (the same numbers as the text tables and the CSV files). No inline script:
// the page's Content-Security-Policy allows scripts from this site only.
(function () {
  "use strict";

  var COLORS = ["#4f46e5", "#16a34a", "#f59e0b", "#dc2626", "#0891b2", "#7c3aed", "#64748b"];
  // The counts each report's "series" chart draws (its times are in the table).
  var SERIES = {
    conversations: ["opened", "closed", "reopened"],
    messages: ["incoming", "outgoing", "failed"],
    resolutions: ["closed_by_person", "closed_by_bot", "closed_by_other"],
    assignments: ["assigned", "unassigned"],
    contacts: ["contacts_added", "contacts_deleted", "contacts_merged"],
    broadcasts: ["sent", "delivered", "read", "replied", "failed"],
  };
  // Tables whose bars are named by a text column (a person, a team, a broadcast), and what they draw.
  var NAMED = {
    users: ["person", ["assigned", "closed", "messages_sent"]],
    by_broadcast: ["broadcast", ["sent", "delivered", "read", "replied", "failed"]],
  };
  var TOP = 10;
  // The Responses report's charts of times, each with the time its bars and buckets open.
  var RESPONSE_CHARTS = {
    series: "first_response",
    buckets: "first_response",
    reply_series: "reply_time",
    reply_buckets: "reply_time",
    first_assign_series: "first_assign_response",
    first_assign_buckets: "first_assign_response",
    last_assign_series: "last_assign_response",
    last_assign_buckets: "last_assign_response",
  };

  function column(table, name) {
    var index = table.columns.indexOf(name);
    return table.rows.map(function (row) { return row[index]; });
  }

  function label(labels, key) {
    return labels[key] || key;
  }

  function dataset(labels, table, name, index, type) {
    var color = COLORS[index % COLORS.length];
    return {
      label: label(labels, name),
      data: column(table, name),
      backgroundColor: color,
      borderColor: color,
      type: type || undefined,
      spanGaps: true,
      key: name,
    };
  }

  // Which columns each chart draws: the first column names the bars, the others are series.
  function spec(report, name, table, labels) {
    var first = table.columns[0];
    var names = column(table, first).map(function (value) {
      var text = value === null ? "–" : String(value);
      // An hour of a one-day range ("2026-11-26T09") reads as its time.
      return /^\d{4}-\d{2}-\d{2}T\d{2}$/.test(text) ? text.slice(11) + ":00" : label(labels, text);
    });
    var series;
    var type = "bar";
    if (report === "responses" && RESPONSE_CHARTS[name] && /series$/.test(name)) {
      type = "line";
      series = ["median_seconds", "average_seconds", "p90_seconds"];
    } else if (name === "series") {
      series = SERIES[report] || [table.columns[1]];
    } else if (name === "by_source" && report === "assignments") {
      series = ["assigned", "unassigned"];
    } else if (NAMED[name]) {
      names = column(table, NAMED[name][0]).map(function (value) { return value === null ? "–" : String(value); });
      series = NAMED[name][1];
    } else if (name === "leaderboard") {
      // The top of the ranking; the whole of it is in the table.
      table = { columns: table.columns, rows: table.rows.slice(0, TOP) };
      names = column(table, "name").map(function (value) { return value === null ? "–" : String(value); });
      series = [table.columns[3]];
    } else if (name === "closed_by_category") {
      names = column(table, "category").map(function (value) { return value === null ? "–" : String(value); });
      series = ["closed"];
    } else {
      series = [table.columns[table.columns.length - 1] === "percent" ? "count" : table.columns[1]];
    }
    return {
      type: type,
      data: {
        labels: names,
        datasets: series.map(function (key, index) { return dataset(labels, table, key, index); }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { display: series.length > 1 } },
        scales: { y: { beginAtZero: true } },
      },
    };
  }

  // Clicking a bar opens the conversations behind it (the same range and filters): a day or hour
  // of the conversations series or of a Responses time's series, a bucket of a Responses time.
  function drillUrl(data, chartName, table, datasetKey, index) {
    var value = table.rows[index] && table.rows[index][0];
    if (value === null || value === undefined) {
      return null;
    }
    var extra = null;
    if (data.name === "conversations" && chartName === "series") {
      extra = "metric=" + encodeURIComponent(datasetKey) + "&period=" + encodeURIComponent(value);
    } else if (data.name === "responses" && RESPONSE_CHARTS[chartName]) {
      // A bucket of a "…buckets" chart, or a day (or hour) of a "…series" chart.
      extra = "metric=" + RESPONSE_CHARTS[chartName] +
        (/buckets$/.test(chartName) ? "&bucket=" : "&period=") + encodeURIComponent(value);
    }
    if (!extra) {
      return null;
    }
    return data.list_url + "?" + extra + (data.query ? "&" + data.query : "");
  }

  function draw() {
    var holder = document.getElementById("report-data");
    if (!holder || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(holder.textContent);
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var name = canvas.getAttribute("data-chart");
      var table = data.tables[name];
      if (!table) {
        return;
      }
      var config = spec(data.name, name, table, data.labels);
      var keys = config.data.datasets.map(function (set) { return set.key; });
      config.options.onClick = function (_event, elements) {
        if (!elements.length) {
          return;
        }
        var url = drillUrl(data, name, table, keys[elements[0].datasetIndex], elements[0].index);
        if (url) {
          window.location.assign(url);
        }
      };
      var chart = new window.Chart(canvas, config);
      canvas.setAttribute("data-drawn", chart.data.datasets.length ? "true" : "false");
    });
  }

  // Choosing a preset clears the custom dates, and typing a date chooses "custom".
  function wireRange() {
    var range = document.getElementById("f-range");
    var start = document.getElementById("f-from");
    var end = document.getElementById("f-to");
    if (!range || !start || !end) {
      return;
    }
    range.addEventListener("change", function () {
      if (range.value !== "custom") {
        start.value = "";
        end.value = "";
      }
    });
    [start, end].forEach(function (input) {
      input.addEventListener("change", function () {
        if (input.value) {
          range.value = "custom";
        }
      });
    });
  }

  function start() {
    wireRange();
    draw();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
