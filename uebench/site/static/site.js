// uebench site: sortable tables, the board's filters and column toggles, copy buttons.
// Plain JavaScript, no library, nothing fetched: the pages work from file:// as well.
"use strict";

(function () {
  function sortValue(cell, type) {
    if (!cell) return null;
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (type === "number") {
      var v = parseFloat(raw);
      return isNaN(v) ? null : v;
    }
    return raw.toLowerCase();
  }

  function cellAt(row, index) {
    return row.children[index] || null;
  }

  // Click a header: sort the rows by that column; again: the other way.  Empty cells go last.
  function makeSortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].children : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var type = th.getAttribute("data-type") || "text";
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortValue(cellAt(a, index), type), y = sortValue(cellAt(b, index), type);
          if (x === null && y === null) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          var order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  function matches(text, query) {
    return query === "" || text.toLowerCase().indexOf(query) !== -1;
  }

  // The board's controls: filter attacks (rows) and defenses (columns) by name; toggle columns.
  function boardControls() {
    var tables = document.querySelectorAll("table.board");
    if (!tables.length) return;
    var attacks = document.getElementById("filter-attacks");
    var defenses = document.getElementById("filter-defenses");
    function filter() {
      var a = attacks.value.trim().toLowerCase(), d = defenses.value.trim().toLowerCase();
      tables.forEach(function (table) {
        table.querySelectorAll("tbody tr").forEach(function (row) {
          row.classList.toggle("filtered-out", !matches(row.getAttribute("data-attack") || "", a));
        });
        table.querySelectorAll("th.defense, td[data-col]").forEach(function (cell) {
          var col = cell.getAttribute("data-col");
          if (!col || col.indexOf("imp-") === 0) return;
          cell.classList.toggle("col-hidden", !matches(col, d));
        });
      });
    }
    attacks.addEventListener("input", filter);
    defenses.addEventListener("input", filter);
    ["oracle", "imperceptibility", "reported"].forEach(function (name) {
      var box = document.getElementById("toggle-" + name);
      if (!box) return;
      box.addEventListener("change", function () {
        tables.forEach(function (table) { table.classList.toggle("show-" + name, box.checked); });
      });
    });
    filter();
  }

  function copyButtons() {
    document.querySelectorAll("button.copy").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = button.getAttribute("data-copy");
        var done = function () { button.textContent = "copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { button.textContent = "select it"; });
        } else {  // file:// pages are not a secure context: select the text for the reader instead
          var range = document.createRange();
          range.selectNodeContents(button.parentNode.querySelector("code"));
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          button.textContent = "selected";
        }
      });
    });
  }

  // Published vs measured: one filter over every source's table
  function reportedFilter() {
    var box = document.getElementById("filter-reported");
    if (!box) return;
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase();
      document.querySelectorAll("tr.reported-row").forEach(function (row) {
        row.classList.toggle("filtered-out", !matches(row.getAttribute("data-search") || "", q));
      });
    });
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  reportedFilter();
  boardControls();
  copyButtons();
})();
