"""The HTML page's style and script, inline (the page must work offline, as one file).

Depth views are Graphviz SVGs whose node ids are "d<depth>-<node id>" and whose opened
blocks are clusters with ids "d<depth>-<block id>": a block's node at depth k and its
cluster at depth k + 1 share the walk's id, which is how a click finds where to go."""

STYLE = """
html,body{margin:0;height:100%;font:13px Helvetica,Arial,sans-serif;color:#222}
header{display:flex;gap:1em;align-items:center;padding:6px 10px;border-bottom:1px solid #ccd;
background:#f7f8fb}
header .help{color:#667;margin-left:auto}
header button{margin:0 2px;padding:1px 7px;border:1px solid #99a;background:#fff;cursor:pointer}
header button.on{background:#335;color:#fff}
main{position:absolute;top:34px;left:0;right:0;bottom:0;overflow:auto}
.view{width:100%;height:100%}
.view[hidden]{display:none}
.js main{overflow:hidden;cursor:grab}
.js .node.module,.js .cluster.block{cursor:pointer}
.node.opened>path,.node.opened>polygon{stroke-width:3px}
#tip{position:fixed;pointer-events:none;background:#fffff0;border:1px solid #998;padding:4px 6px;
white-space:pre;font:12px Menlo,Consolas,monospace;box-shadow:1px 1px 4px #0003;z-index:9}
"""

SCRIPT = r"""
(function () {
  document.documentElement.className = 'js';
  var views = {}, shown = null, tip = document.getElementById('tip');
  var XLINK = 'http://www.w3.org/1999/xlink';
  document.querySelectorAll('.view').forEach(function (v) {
    var svg = v.querySelector('svg');
    var box = svg.viewBox.baseVal;
    views[v.dataset.depth] = {pane: v, svg: svg, home: [box.x, box.y, box.width, box.height]};
    if (!v.hidden) shown = v.dataset.depth;
    // The figures move from the native tooltip to ours (one tooltip, not two).
    svg.querySelectorAll('a').forEach(function (a) {
      var text = a.getAttributeNS(XLINK, 'title');
      if (text !== null) { a.removeAttributeNS(XLINK, 'title'); a.dataset.tip = text; }
    });
  });
  function setBox(view, b) { view.svg.setAttribute('viewBox', b.join(' ')); }
  function show(depth, focus) {
    var view = views[depth]; if (!view) return false;
    Object.keys(views).forEach(function (d) { views[d].pane.hidden = d !== String(depth); });
    document.querySelectorAll('header button').forEach(function (b) {
      b.className = b.dataset.depth === String(depth) ? 'on' : '';
    });
    shown = String(depth);
    setBox(view, view.home);
    if (focus) {
      var el = document.getElementById('d' + depth + '-' + focus);
      if (el) {
        var r = el.getBBox(), pad = 40, g = view.svg.querySelector('g.graph');
        var m = g.transform.baseVal.consolidate();
        var dx = m ? m.matrix.e : 0, dy = m ? m.matrix.f : 0;
        var w = Math.max(r.width + 2 * pad, view.home[2] / 4);
        var h = Math.max(r.height + 2 * pad, view.home[3] / 6);
        setBox(view, [r.x + dx + r.width / 2 - w / 2, r.y + dy + r.height / 2 - h / 2, w, h]);
      }
    }
    return true;
  }
  document.querySelectorAll('header button').forEach(function (b) {
    b.addEventListener('click', function () { show(b.dataset.depth); });
  });
  function idOf(el, depth) { return el.id.slice(('d' + depth + '-').length); }
  var dragged = false;
  document.getElementById('views').addEventListener('click', function (e) {
    if (dragged) return;
    var node = e.target.closest('g.node.module'), depth = Number(shown);
    var inside = node && document.getElementById('d' + (depth + 1) + '-' + idOf(node, depth));
    if (inside && views[depth + 1]) {
      show(depth + 1, idOf(node, depth)); return;
    }
    var block = e.target.closest('g.cluster.block');
    if (block && !node) {
      var id = idOf(block, depth);
      for (var d = depth - 1; d >= 1; d--) {
        var closed = document.getElementById('d' + d + '-' + id);
        if (closed && closed.classList.contains('node')) {
          show(d, id); return;
        }
      }
    }
  });
  var start = null;
  var main = document.getElementById('views');
  main.addEventListener('mousedown', function (e) {
    start = [e.clientX, e.clientY]; dragged = false;
  });
  window.addEventListener('mouseup', function () {
    start = null; setTimeout(function () { dragged = false; }, 0);
  });
  main.addEventListener('mousemove', function (e) {
    var view = views[shown];
    if (start && view) {
      var b = view.svg.viewBox.baseVal, k = b.width / view.svg.clientWidth;
      var dx = e.clientX - start[0], dy = e.clientY - start[1];
      if (Math.abs(dx) + Math.abs(dy) > 2) dragged = true;
      setBox(view, [b.x - dx * k, b.y - dy * k, b.width, b.height]);
      start = [e.clientX, e.clientY];
    }
    var a = e.target.closest('a[data-tip]');
    if (a) {
      tip.textContent = a.dataset.tip; tip.hidden = false;
      tip.style.left = (e.clientX + 14) + 'px'; tip.style.top = (e.clientY + 14) + 'px';
    } else tip.hidden = true;
  });
  main.addEventListener('wheel', function (e) {
    var view = views[shown]; if (!view) return;
    e.preventDefault();
    var b = view.svg.viewBox.baseVal, r = view.svg.getBoundingClientRect();
    var f = e.deltaY > 0 ? 1.15 : 1 / 1.15;
    var px = b.x + (e.clientX - r.left) / r.width * b.width;
    var py = b.y + (e.clientY - r.top) / r.height * b.height;
    setBox(view, [px - (px - b.x) * f, py - (py - b.y) * f, b.width * f, b.height * f]);
  }, {passive: false});
  window.cnnshapeGraph = {show: show, views: views};
  // file.html#click=n10 clicks block n10 of the view shown: a link to a block opened, and
  // what the browser test uses to check opening and closing without a mouse.
  var asked = /^#click=(.+)$/.exec(location.hash);
  if (asked) asked[1].split(',').forEach(function (id) {
    var el = document.getElementById('d' + shown + '-' + decodeURIComponent(id));
    var target = el && (el.querySelector('path,polygon,ellipse') || el);
    if (target) target.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  });
})();
"""
