// Sorts a table's body by the clicked header; a second click reverses the order. Cells are compared
// by the first number in them (so "#2 · 91.3", "[90.1, 92.0]" and "+1.5 [...]" sort by 2, 90.1, 1.5),
// else as text; whatever the direction, numbers come before words ("failed", "refused") and those
// before empty cells ("—").
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var key = function (row) {
        var text = row.cells[col].textContent.trim();
        var match = text.match(/^[#\[]?([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?)/i);
        var group = match ? 0 : (text === "" || text === "\u2014" ? 2 : 1);
        return { group: group, number: match ? parseFloat(match[1]) : 0, text: text };
      };
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x.group !== y.group) { return x.group - y.group; }
        var order = x.group === 0 ? x.number - y.number : x.text.localeCompare(y.text);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
// Keeps a wide table's first columns (up to the strategy) in view while it scrolls sideways.
document.querySelectorAll("table[data-frozen]").forEach(function (table) {
  var n = parseInt(table.getAttribute("data-frozen"), 10);
  var lefts = Array.prototype.slice.call(table.rows[0].cells, 0, n).map(function (c) { return c.offsetLeft; });
  Array.prototype.forEach.call(table.rows, function (row) {
    for (var i = 0; i < n && i < row.cells.length; i++) {
      row.cells[i].classList.add("frozen");
      row.cells[i].classList.toggle("last", i === n - 1);
      row.cells[i].style.left = lefts[i] + "px";
    }
  });
});
