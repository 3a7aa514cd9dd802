"""What a person would see wrong on a page, read from the elements' boxes in a real browser.

``PROBLEMS`` is a function evaluated in the page (Playwright's ``page.evaluate``); it returns
one line per problem found:

* ``cut``: a label whose text runs past a box that clips it, or ends in an ellipsis drawn by
  CSS (``text-overflow``) or written as one;
* ``overlap``: two of the page's headings, buttons, sliders and charts drawn over each other;
* inside each Plotly figure: its title, legend, slider, buttons, plot areas, axis titles and
  annotations drawn over each other, any of them running past the figure's sides, a legend
  that scrolls (its last entries hidden);
* ``scrolls``: a table wider than its box with nothing under it saying that it scrolls.

``SCRIPT_DONE`` is true once the server has run a Streamlit page's script; ``READY`` once the
browser has drawn all of it too (Streamlit shows skeletons until the code of every kind of
element on the page has loaded: Plotly's is most of it), every chart included.

    python -m pytest -q -m browser tests/test_browser_layout.py
"""

SCRIPT_DONE = """() => document.querySelector('[data-testid="stApp"]')
  ?.dataset.testScriptState === 'notRunning'"""

READY = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  return Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    .every(chart => chart.querySelector('.js-plotly-plot svg.main-svg'));
}"""

PROBLEMS = r"""() => {
  const problems = [];
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0
      && el.checkVisibility({visibilityProperty: true, opacityProperty: true});
  };
  const box = (el) => el.getBoundingClientRect();
  const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 2
    && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 2;
  const words = (el) => (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ');
  const short = (t) => t.length > 60 ? t.slice(0, 60) + '…' : t;

  // 1. labels cut: text past a clipping box, or an ellipsis
  const labels = [
    '[data-testid="stWidgetLabel"]', '[data-testid="stMetricLabel"]',
    '[data-testid="stMetricValue"]', '[data-testid="stMetricDelta"]',
    '[data-testid="stHeading"]', '[data-testid="stCaptionContainer"]',
    '[data-testid="stMarkdownContainer"]', 'button', '[data-baseweb="select"]',
    '[data-baseweb="tab"]', '[data-testid="stExpander"] summary',
    '[data-testid="stSliderThumbValue"]', '[data-testid="stSidebarNav"] a',
  ].join(',');
  const seen = new Set();
  for (const root of document.querySelectorAll(labels)) {
    if (!shown(root)) continue;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (!node.textContent.trim() || seen.has(node) || !parent || !shown(parent)) continue;
      seen.add(node);
      if (parent.closest('pre, code, .katex, [data-testid="stCode"]')) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const text = range.getBoundingClientRect();
      if (text.width === 0) continue;
      for (let up = parent; up && up !== document.body; up = up.parentElement) {
        const style = getComputedStyle(up);
        if (!['hidden', 'clip'].includes(style.overflowX)) continue;
        const edge = box(up);
        if (text.right > edge.right + 1 || text.left < edge.left - 1) {
          problems.push(`cut: "${short(words(parent))}" (${Math.round(text.width)} px of text ` +
                        `in ${Math.round(edge.width)} px)`);
          break;
        }
      }
      const style = getComputedStyle(parent);
      if (style.textOverflow === 'ellipsis' && parent.scrollWidth > parent.clientWidth + 1)
        problems.push(`cut: "${short(words(parent))}" (ellipsis)`);
      else if (/(…|\.\.\.)$/.test(node.textContent.trim()) && root.matches(
          '[data-testid="stMetricLabel"], [data-testid="stWidgetLabel"], button, ' +
          '[data-baseweb="select"]'))
        problems.push(`cut: "${short(words(parent))}" (ends in an ellipsis)`);
    }
  }

  // 2. the page's headings, buttons, sliders and charts drawn over each other
  const parts = [];
  const kinds = ['stHeading', 'stSlider', 'stButton', 'stDownloadButton', 'stFormSubmitButton',
                 'stPlotlyChart', 'stMetric', 'stSelectbox'];
  for (const el of document.querySelectorAll(kinds.map(k => `[data-testid="${k}"]`).join(',')))
    if (shown(el))
      parts.push({el, name: `${el.dataset.testid} "${short(words(el)).slice(0, 30)}"`});
  for (let i = 0; i < parts.length; i++) for (let j = i + 1; j < parts.length; j++) {
    const a = parts[i], b = parts[j];
    if (a.el.contains(b.el) || b.el.contains(a.el)) continue;
    if (overlap(box(a.el), box(b.el))) problems.push(`overlap: ${a.name} and ${b.name}`);
  }

  // 3. inside each Plotly figure
  document.querySelectorAll('.js-plotly-plot').forEach((plot, n) => {
    if (!shown(plot)) return;
    const frame = box(plot);
    const name = `chart ${n} "${short(words(plot.querySelector('.gtitle') || plot)).slice(0, 40)}"`;
    const pieces = [];
    const add = (what, el) => { if (el && shown(el)) pieces.push({what, rect: box(el)}); };
    add('title', plot.querySelector('.infolayer .gtitle'));
    add('subtitle', plot.querySelector('.infolayer .gtitle-subtitle'));
    add('legend', plot.querySelector('.infolayer .legend .bg'));
    add('slider', plot.querySelector('.slider-container'));
    plot.querySelectorAll('.updatemenu-button').forEach((el, i) => add(`button ${i}`, el));
    plot.querySelectorAll('.draglayer .nsewdrag').forEach((el, i) => add(`plot area ${i}`, el));
    plot.querySelectorAll('.infolayer > g[class^="g-x"][class$="title"]')
      .forEach((el, i) => add(`x title ${i}`, el));
    plot.querySelectorAll('.annotation').forEach((el, i) =>
      add(`annotation "${short(words(el)).slice(0, 25)}"`, el));
    const inside = (a, b) => a.what.startsWith('plot area') && b.what.startsWith('annotation');
    for (let i = 0; i < pieces.length; i++) for (let j = i + 1; j < pieces.length; j++) {
      const a = pieces[i], b = pieces[j];
      if (a.what.startsWith('plot area') && b.what.startsWith('plot area')) continue;
      if (inside(a, b) || inside(b, a)) continue;  // a label written on the plot on purpose
      if (overlap(a.rect, b.rect)) problems.push(`${name}: its ${a.what} overlaps its ${b.what}`);
    }
    for (const p of pieces)
      if (p.rect.left < frame.left - 1 || p.rect.right > frame.right + 1)
        problems.push(`${name}: its ${p.what} runs past the side (` +
                      `${Math.round(p.rect.left - frame.left)}..` +
                      `${Math.round(p.rect.right - frame.left)} of ${Math.round(frame.width)} px)`);
    const bar = plot.querySelector('.legend .scrollbar');
    if (bar && bar.getBoundingClientRect().height > 0)
      problems.push(`${name}: its legend scrolls and hides entries`);
  });

  // 4. a table wider than its box says so under it
  document.querySelectorAll('[data-testid="stDataFrame"]').forEach((table) => {
    if (!shown(table)) return;
    const scroller = table.querySelector('.dvn-scroller');
    if (!scroller || scroller.scrollWidth <= scroller.clientWidth + 1) return;
    let said = '';
    const block = table.closest('[data-testid="stElementContainer"]') || table;
    for (let next = block.nextElementSibling, k = 0; next && k < 2;
         next = next.nextElementSibling, k++) said += words(next);
    const expander = table.closest('[data-testid="stExpander"]');
    if (expander) said += words(expander.querySelector('summary'));
    if (!/scroll/i.test(said))
      problems.push(`scrolls: a table ${scroller.scrollWidth} px wide in ` +
                    `${scroller.clientWidth} px, and nothing under it says so`);
  });
  return problems;
}"""
