/* attention_picture - look at attention patterns.
 *
 *   attention_picture MODEL --tokens "1 2 3 ..." [--layer L] [--head H]
 *                     [-o pattern.svg] [--html patterns.html]
 *
 * blocks.L.attn.hook_pattern [batch, head, query, key] says, for every
 * position (query), how a head spreads its attention over the positions up
 * to it (keys); each row sums to 1 and everything right of the diagonal is
 * 0, since GPT-2 only looks back. TransformerLens users draw it with
 * circuitsvis.attention.attention_patterns(tokens, cache["pattern", L][0]).
 *
 * -o writes one head as an SVG heatmap (default pattern.svg): rows are
 * queries, columns keys, darker is more attention, tokens on both axes, and
 * hovering over a cell shows its value. --html writes one self-contained
 * page with every head of every layer and a layer / head selector: the
 * patterns sit in the page as JSON and a few lines of JavaScript draw them.
 * Both are written by hand below; token text is escaped for XML and for
 * JSON inside HTML (see ex_write_escaped).
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "[MODEL] --tokens \"1 2 3 ...\" [--layer L] [--head H] [-o pattern.svg] [--html patterns.html]"
#define CELL 22      /* pixels per heatmap cell  */
#define CHAR_W 7     /* pixels per label character at font-size 11 */

typedef char label_t[64];

/* White for 0 to dark blue for 1. */
static void colour(FILE *f, float p) {
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    fprintf(f, "rgb(%d,%d,%d)", (int)(255 - 247 * p), (int)(255 - 207 * p), (int)(255 - 148 * p));
}

/* P [n, n] of one head: row = query, column = key. */
static void write_svg(FILE *f, const label_t *labels, int n, const float *P, int layer, int head) {
    int i, j, widest = 1, side, top;
    for (i = 0; i < n; i++) widest = (int)strlen(labels[i]) > widest ? (int)strlen(labels[i]) : widest;
    side = 8 + CHAR_W * (widest > 24 ? 24 : widest); /* room for the labels */
    top = 24 + side;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"monospace\" "
               "font-size=\"11\">\n", side + n * CELL + 8, top + n * CELL + 8);
    fprintf(f, "<text x=\"4\" y=\"14\">blocks.%d.attn.hook_pattern head %d (rows: query, columns: key)</text>\n",
            layer, head);
    for (i = 0; i < n; i++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", side - 4, top + i * CELL + CELL * 2 / 3);
        ex_write_escaped(f, labels[i], 0);
        fprintf(f, "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\">", side + i * CELL + CELL * 2 / 3,
                top - 4);
        ex_write_escaped(f, labels[i], 0);
        fprintf(f, "</text>\n");
    }
    for (i = 0; i < n; i++)
        for (j = 0; j <= i; j++) { /* the causal mask leaves j > i at 0: no cell */
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"", side + j * CELL, top + i * CELL,
                    CELL, CELL);
            colour(f, P[i * n + j]);
            fprintf(f, "\"><title>query %d, key %d: %.4f</title></rect>\n", i, j, P[i * n + j]);
        }
    fprintf(f, "</svg>\n");
}

/* The page's script: fill the selectors, draw the chosen head on a canvas,
 * show a cell's value under the mouse. Labels go in with fillText and
 * new Option(), never as HTML. */
static const char *page_script =
    "var D = JSON.parse(document.getElementById('data').textContent), T = D.tokens.length;\n"
    "var cell = Math.max(4, Math.min(24, Math.floor(720 / T)));\n"
    "var side = 8 + 7 * Math.min(24, Math.max.apply(null, D.tokens.map(function (s) { return s.length; })));\n"
    "var cv = document.getElementById('c'), g = cv.getContext('2d'), info = document.getElementById('info');\n"
    "var L = document.getElementById('layer'), H = document.getElementById('head');\n"
    "function fill(sel, n) { for (var i = 0; i < n; i++) sel.add(new Option(i, i)); sel.onchange = draw; }\n"
    "fill(L, D.n_layers); fill(H, D.n_heads);\n"
    "function pattern() { return D.patterns[+L.value * D.n_heads + +H.value].p; }\n"
    "function draw() {\n"
    "  var P = pattern(), i, j;\n"
    "  cv.width = side + T * cell + 8; cv.height = side + T * cell + 8;\n"
    "  g.font = '11px monospace'; g.fillStyle = '#000'; g.textBaseline = 'middle';\n"
    "  for (i = 0; i < T; i++) {\n"
    "    g.textAlign = 'right'; g.fillText(D.tokens[i], side - 4, side + (i + 0.5) * cell);\n"
    "    g.save(); g.translate(side + (i + 0.5) * cell, side - 4); g.rotate(-Math.PI / 2);\n"
    "    g.textAlign = 'left'; g.fillText(D.tokens[i], 0, 0); g.restore();\n"
    "  }\n"
    "  for (i = 0; i < T; i++)\n"
    "    for (j = 0; j <= i; j++) {\n"
    "      var p = Math.max(0, Math.min(1, P[i][j]));\n"
    "      g.fillStyle = 'rgb(' + Math.round(255 - 247 * p) + ',' + Math.round(255 - 207 * p) + ','\n"
    "                  + Math.round(255 - 148 * p) + ')';\n"
    "      g.fillRect(side + j * cell, side + i * cell, cell, cell);\n"
    "    }\n"
    "}\n"
    "cv.onmousemove = function (e) {\n"
    "  var r = cv.getBoundingClientRect(), P = pattern();\n"
    "  var i = Math.floor((e.clientY - r.top - side) / cell), j = Math.floor((e.clientX - r.left - side) / cell);\n"
    "  info.textContent = i >= 0 && j >= 0 && i < T && j <= i\n"
    "    ? 'query ' + i + ' (' + D.tokens[i] + '), key ' + j + ' (' + D.tokens[j] + '): ' + P[i][j].toFixed(4) : '';\n"
    "};\n"
    "draw();\n";

/* Every head: pattern is blocks.L.attn.hook_pattern of each layer. */
static void write_html(FILE *f, const tlens_ctx *ctx, const tlens_config *cfg, const label_t *labels, int n) {
    int l, h, i, j;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>attention patterns</title>\n"
               "<style>body { font-family: sans-serif; } canvas { display: block; margin-top: 8px; }</style>\n"
               "</head><body>\n<h3>Attention patterns (rows: query, columns: key)</h3>\n"
               "<label>layer <select id=\"layer\"></select></label>\n"
               "<label>head <select id=\"head\"></select></label>\n"
               "<span id=\"info\"></span>\n<canvas id=\"c\"></canvas>\n<script type=\"application/json\" id=\"data\">\n"
               "{\"n_layers\": %d, \"n_heads\": %d, \"tokens\": [", cfg->n_layers, cfg->n_heads);
    for (i = 0; i < n; i++) {
        fprintf(f, "%s\"", i ? ", " : "");
        ex_write_escaped(f, labels[i], 1);
        fprintf(f, "\"");
    }
    fprintf(f, "],\n\"patterns\": [\n");
    for (l = 0; l < cfg->n_layers; l++)
        for (h = 0; h < cfg->n_heads; h++) {
            const float *P = tlens_cache_act(ctx, "pattern", l, NULL)->data + (size_t)h * (size_t)n * (size_t)n;
            fprintf(f, "{\"layer\": %d, \"head\": %d, \"p\": [", l, h);
            for (i = 0; i < n; i++) { /* the lower triangle: row i has keys 0..i */
                fprintf(f, "%s[", i ? ", " : "");
                for (j = 0; j <= i; j++) fprintf(f, "%s%.4g", j ? "," : "", P[i * n + j]);
                fprintf(f, "]");
            }
            fprintf(f, "]}%s\n", l == cfg->n_layers - 1 && h == cfg->n_heads - 1 ? "" : ",");
        }
    fprintf(f, "]}\n</script>\n<script>\n%s</script>\n</body></html>\n", page_script);
}

static FILE *open_output(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) ex_die("cannot write %s", path);
    return f;
}

static void close_output(FILE *f, const char *path) {
    if (ferror(f) | fclose(f)) ex_die("error writing %s", path);
    printf("wrote %s\n", path);
}

int main(int argc, char **argv) {
    ex_common c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_config *cfg;
    const char *v, *svg_path = NULL, *html_path = NULL;
    int32_t *tokens;
    int n, i, layer = 0, head = 0;
    label_t *labels;

    ex_args_begin(&c, "attention_picture", USAGE);
    for (i = 1; i < argc; i++) {
        if ((v = ex_value(argc, argv, &i, "--layer"))) layer = ex_int(v, "--layer");
        else if ((v = ex_value(argc, argv, &i, "--head"))) head = ex_int(v, "--head");
        else if ((v = ex_value(argc, argv, &i, "-o"))) svg_path = v;
        else if ((v = ex_value(argc, argv, &i, "--html"))) html_path = v;
        else ex_args_common(&c, argc, argv, &i);
    }
    ex_args_end(&c);
    if (!svg_path && !html_path) svg_path = "pattern.svg";

    model = ex_load(c.model_path);
    cfg = tlens_model_config(model);
    if (layer < 0 || layer >= cfg->n_layers) ex_die("--layer %d: the model has layers 0..%d", layer, cfg->n_layers - 1);
    if (head < 0 || head >= cfg->n_heads) ex_die("--head %d: the model has heads 0..%d", head, cfg->n_heads - 1);
    tokens = ex_prompt_tokens(model, &c, &n);
    labels = (label_t *)ex_malloc((size_t)n * sizeof *labels);
    for (i = 0; i < n; i++) ex_token_label(model, tokens[i], labels[i], sizeof labels[i]);
    ctx = ex_context(model);

    tlens_cache_select(ctx, "blocks.*.attn.hook_pattern");
    ex_check(tlens_run(ctx, tokens, 1, n, &err), &err);

    if (svg_path) {
        /* cache["pattern", L][0, H]: [query, key] */
        const float *P = tlens_cache_act(ctx, "pattern", layer, NULL)->data + (size_t)head * (size_t)n * (size_t)n;
        FILE *f = open_output(svg_path);
        write_svg(f, (const label_t *)labels, n, P, layer, head);
        close_output(f, svg_path);
    }
    if (html_path) {
        FILE *f = open_output(html_path);
        write_html(f, ctx, cfg, (const label_t *)labels, n);
        close_output(f, html_path);
    }

    free(labels);
    free(tokens);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return 0;
}
