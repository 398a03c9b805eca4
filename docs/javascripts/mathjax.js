// MathJax 3 configuration for pymdownx.arithmatex (generic mode). MathJax itself is served from
// assets/mathjax/, copied at build time from the django-static-mathjax Python package (no CDN).
//
// Each page is typeset exactly once: MathJax's own start-up pass is off, and typesetMath() runs for every page
// that Material shows (its document$ observable emits once for the first page and again after each instant
// navigation, if that feature is on). Passes are chained on MathJax.startup.promise, so two never run at the
// same time: two concurrent passes would both find the same TeX and render every formula twice.

let typesetRequested = false;

function typesetMath() {
  const mathjax = window.MathJax;
  if (!mathjax || !mathjax.typesetPromise) {
    typesetRequested = true; // MathJax has not started yet: its pageReady() below does the pass
    return;
  }
  mathjax.startup.promise = mathjax.startup.promise.then(() => {
    mathjax.startup.output.clearCache();
    mathjax.typesetClear();
    mathjax.texReset();
    return mathjax.typesetPromise();
  });
}

window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
  startup: {
    typeset: false,
    pageReady() {
      return MathJax.startup.defaultPageReady().then(() => {
        if (typesetRequested || typeof document$ === "undefined") {
          typesetRequested = false;
          typesetMath();
        }
      });
    },
  },
};

if (typeof document$ !== "undefined") {
  document$.subscribe(() => typesetMath());
}
