/* The GPT-2 family: config.json as the real checkpoints carry it (every
 * key, the ones that do not matter included) parses to the right shapes,
 * and a model of each width and head count (random weights, one layer, a
 * small vocabulary to stay fast) runs: raw and processed weights give the
 * same log-probabilities, and the attention output equals z @ W_O + b_O
 * computed here. */

typedef struct family_member {
    const char *name;
    int n_layer, n_embd, n_head;
    int inverse_layer_idx; /* the stanford-crfm models */
} family_member;

static const family_member family[] = {
    {"gpt2", 12, 768, 12, 0},          {"gpt2-medium", 24, 1024, 16, 0}, {"gpt2-large", 36, 1280, 20, 0},
    {"gpt2-xl", 48, 1600, 25, 0},      {"distilgpt2", 6, 768, 12, 0},
    {"stanford-crfm/alias-gpt2-small-x21", 12, 768, 12, 1},
};

/* A config.json written as Hugging Face writes GPT-2's. */
static int family_config_json(char *out, size_t cap, const family_member *f) {
    return snprintf(out, cap,
                    "{\n  \"_name_or_path\": \"%s\",\n  \"activation_function\": \"gelu_new\",\n"
                    "  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"attn_pdrop\": 0.1,\n"
                    "  \"bos_token_id\": 50256,\n  \"embd_pdrop\": 0.1,\n  \"eos_token_id\": 50256,\n"
                    "  \"initializer_range\": 0.02,\n  \"layer_norm_epsilon\": 1e-05,\n"
                    "  \"model_type\": \"gpt2\",\n  \"n_ctx\": 1024,\n  \"n_embd\": %d,\n  \"n_head\": %d,\n"
                    "  \"n_inner\": null,\n  \"n_layer\": %d,\n  \"n_positions\": 1024,\n"
                    "  \"reorder_and_upcast_attn\": %s,\n  \"resid_pdrop\": 0.1,\n"
                    "  \"scale_attn_by_inverse_layer_idx\": %s,\n  \"scale_attn_weights\": true,\n"
                    "  \"summary_activation\": null,\n  \"summary_first_dropout\": 0.1,\n"
                    "  \"summary_proj_to_labels\": true,\n  \"summary_type\": \"cls_index\",\n"
                    "  \"summary_use_proj\": true,\n"
                    "  \"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}},\n"
                    "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"4.26.0.dev0\",\n"
                    "  \"use_cache\": true,\n  \"vocab_size\": 50257\n}\n",
                    f->name, f->n_embd, f->n_head, f->n_layer, f->inverse_layer_idx ? "true" : "false",
                    f->inverse_layer_idx ? "true" : "false");
}

static void test_family_configs(void) {
    size_t i;
    for (i = 0; i < sizeof family / sizeof family[0]; i++) {
        char json[2048];
        tlens_config c;
        tlens_error err;
        int n = family_config_json(json, sizeof json, &family[i]);
        tlens_result r = tlens__config_parse(&c, json, (size_t)n, family[i].name, NULL, &err);
        if (sizeof(size_t) < 8 && family[i].n_embd >= 1280) { /* too big for a 32-bit address space */
            TT_CHECK_INT(r, TLENS_ERR_CONFIG);
            continue;
        }
        TT_REQUIRE(r == TLENS_OK);
        TT_CHECK_INT(c.n_layers, family[i].n_layer);
        TT_CHECK_INT(c.d_model, family[i].n_embd);
        TT_CHECK_INT(c.n_heads, family[i].n_head);
        TT_CHECK_INT(c.d_head, 64);
        TT_CHECK_INT(c.d_mlp, 4 * family[i].n_embd);
        TT_CHECK_INT(c.d_vocab, 50257);
        TT_CHECK_INT(c.n_ctx, 1024);
        TT_CHECK_INT(c.scale_attn_by_inverse_layer_idx, family[i].inverse_layer_idx);
        TT_CHECK_CLOSE(c.eps, 1e-5, 0, 1e-7);
    }
}

static double family_logprob(const float *row, int V, int tok) {
    double mx = row[0], sum = 0;
    int i;
    for (i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
    for (i = 0; i < V; i++) sum += exp(row[i] - mx);
    return row[tok] - mx - log(sum);
}

/* The family's widths, plus one that is no whole number of the kernels'
 * 32-column panels (the split path of q, k, v). */
static const family_member shapes[] = {
    {"gpt2", 12, 768, 12, 0},     {"gpt2-medium", 24, 1024, 16, 0}, {"gpt2-large", 36, 1280, 20, 0},
    {"gpt2-xl", 48, 1600, 25, 0}, {"stanford-crfm", 12, 768, 12, 1}, {"odd width", 1, 40, 5, 0},
};

static void test_family_shapes_run(void) {
    size_t i;
    const family_member *family = shapes;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        tlens_config c;
        tlens_model *raw, *proc;
        tlens_ctx *cr, *cp;
        tlens_load_options o;
        tlens_error err;
        int32_t tok[4] = {1, 200, 3, 511};
        int t, v, D, V = 512;
        const tlens_tensor *z, *attn_out;
        memset(&c, 0, sizeof c);
        c.n_layers = family[i].inverse_layer_idx ? 2 : 1; /* layer 1 is where the inverse-layer scaling shows */
        c.d_model = family[i].n_embd;
        c.n_heads = family[i].n_head;
        c.d_mlp = 4 * family[i].n_embd;
        c.d_vocab = V;
        c.n_ctx = 16;
        c.tied = 1;
        c.scale_attn_by_inverse_layer_idx = family[i].inverse_layer_idx;
        memset(&o, 0, sizeof o);
        o.raw = 1;
        TT_REQUIRE(tlens_init_random(&raw, &c, &o, 7, &err) == TLENS_OK);
        TT_REQUIRE(tlens_init_random(&proc, &c, NULL, 7, &err) == TLENS_OK);
        tlens_ctx_new(&cr, raw, &err);
        tlens_ctx_new(&cp, proc, &err);
        tlens_cache_select(cr, "blocks.*.attn.hook_z");
        tlens_cache_select(cr, "blocks.*.hook_attn_out");
        TT_REQUIRE(tlens_run(cr, tok, 1, 4, &err) == TLENS_OK);
        TT_REQUIRE(tlens_run(cp, tok, 1, 4, &err) == TLENS_OK);
        for (t = 0; t < 4; t++)
            for (v = 0; v < V; v += 31)
                TT_CHECK_CLOSE(family_logprob(tlens_logits(cr)->data + t * V, V, v),
                               family_logprob(tlens_logits(cp)->data + t * V, V, v), 1e-4, 1e-4);
        /* attn_out = z @ W_O + b_O, by hand */
        D = c.d_model;
        z = tlens_cache_act(cr, "z", c.n_layers - 1, NULL);
        attn_out = tlens_cache_act(cr, "attn_out", c.n_layers - 1, NULL);
        TT_REQUIRE(z && attn_out);
        for (t = 0; t < 4; t++)
            for (v = 0; v < D; v += 17) {
                double acc = raw->blocks[c.n_layers - 1].b_O[v];
                int k;
                for (k = 0; k < D; k++) acc += (double)z->data[t * D + k] * tlens__mat_get(&raw->blocks[c.n_layers - 1].W_O, k, v);
                TT_CHECK_CLOSE(attn_out->data[t * D + v], acc, 1e-5, 1e-4);
            }
        tlens_ctx_free(cr);
        tlens_ctx_free(cp);
        tlens_free(raw);
        tlens_free(proc);
    }
}

void tests_family(void) {
    TT_RUN(test_family_configs);
    TT_RUN(test_family_shapes_run);
}
