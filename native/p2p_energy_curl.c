/*
 * p2p_energy_curl: the compiled Curl-P kernel of the protocol library.
 *
 * An optional accelerator for custom_components/p2p_energy/protocol/curl.py and
 * pow.py, which keep a numpy path that gives the same results byte for byte.
 * It needs only a C compiler with GCC's vector extensions (GCC or Clang) and the
 * Python headers: no numpy headers, no generated code, no network at build time.
 *
 * State layout. Trits are bit-sliced as in curl.py: each trit is two bits
 * (low, high) with -1 -> (1, 0), 0 -> (1, 1), 1 -> (0, 1), and one 64-bit word
 * holds the same trit of 64 sponges ("lanes"). Python hands over planes of shape
 * (729, words); the kernel works on blocks of four words (256 lanes, one AVX2
 * register) stored as 729 cells of {low, high}.
 *
 * Rounds. Curl-P's round is new[i] = S(s[t(i)], s[t(i + 1)]) with
 * t(i) = 364 i mod 729. Since 729 = 2 * 364 + 1, t(2k) = -k and
 * t(2k + 1) = 364 - k (mod 729), so a round reads two streams that step down by
 * one cell per pair of outputs and needs no index table. Two rounds are fused:
 * the first round's cells are computed on the fly from the two streams and fed
 * straight into the second, so a pass over the state (the cost here: 256 lanes
 * of state are 46 KiB, more than a level-1 data cache) does two rounds. The
 * pass reads four streams that move one cell per step, without branches, so
 * the gates (five per cell and round) are what it costs.
 *
 * Kerl (Keccak-384 over trits) is here too: the bundle hashes, addresses and
 * signatures of the protocol library need it as much as Curl.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__GNUC__)
#error "p2p_energy_curl needs GCC or Clang (vector extensions); the numpy path works without it"
#endif

#define STATE_LENGTH 729
#define HASH_LENGTH 243
#define HALF 364
#define MAX_BLOCK_WORDS 4 /* the widest block a kernel works on: 256 lanes */
#define NONCE_TRITS 81
#define NONCE_ROW (HASH_LENGTH - NONCE_TRITS)
#define COUNTER_TRITS 27
#define ALL_ONES UINT64_MAX

/* A cell as stored: its low words, then its high words (`words` of each per block). */
typedef uint64_t word_t;

/* S-box in the (low, high) encoding: five gates (curl.py's, with
 * a_low ^ (a_low & b_low) written as a_low & ~b_low, one and-not). */
#define SBOX(out_low, out_high, a_low, a_high, b_low, b_high)       \
    do {                                                            \
        __typeof__(a_low) low_ = ((a_low) & ~(b_low)) ^ (a_high);   \
        (out_high) = ((a_high) & (b_high)) ^ ((a_low) & (b_low));   \
        (out_low) = low_;                                           \
    } while (0)

/*
 * One round, natural order in and out:
 * out[2k] = S(in[-k], in[364 - k]), out[2k + 1] = S(in[364 - k], in[728 - k]).
 * The first read of step k + 1 is the last read of step k, so each step loads
 * two new cells and writes two.
 */
#define DEFINE_ROUND_PASS(suffix, attributes)                                          \
    attributes static void round_pass_##suffix(const cell_##suffix *restrict in,                \
                                               cell_##suffix *restrict out) {                   \
        block_##suffix a_low = in[0].low, a_high = in[0].high;                                 \
        for (int k = 0; k < HALF; k++) {                                                \
            block_##suffix b_low = in[HALF - k].low, b_high = in[HALF - k].high;               \
            block_##suffix c_low = in[2 * HALF - k].low, c_high = in[2 * HALF - k].high;       \
            SBOX(out[2 * k].low, out[2 * k].high, a_low, a_high, b_low, b_high);        \
            SBOX(out[2 * k + 1].low, out[2 * k + 1].high, b_low, b_high, c_low, c_high); \
            a_low = c_low;                                                              \
            a_high = c_high;                                                            \
        }                                                                               \
        SBOX(out[2 * HALF].low, out[2 * HALF].high, in[HALF + 1].low, in[HALF + 1].high, \
             in[0].low, in[0].high);                                                    \
    }

/*
 * Two rounds in one pass. With r the state between them, step j makes
 * out[4j .. 4j + 3] from r[729 - 2j] (carried from step j - 1), r[364 - 2j],
 * r[728 - 2j], r[363 - 2j] and r[727 - 2j], and those four new cells of r read
 * in[j + 1], in[183 + j], in[365 + j] and in[547 + j] plus in[j] and in[182 + j]
 * (loaded by step j - 1): four streams that each move up one cell per step, no
 * branches and no index arithmetic beyond them.
 *   r[364 - 2j] = S(in[547 + j], in[182 + j])   r[728 - 2j] = S(in[365 + j], in[j])
 *   r[363 - 2j] = S(in[183 + j], in[547 + j])   r[727 - 2j] = S(in[1 + j], in[365 + j])
 * and finally out[728] = S(r[365], r[0]) with r[365] = S(in[182], in[546]),
 * r[0] = S(in[0], in[364]).
 */
#define QUARTER 182
#define DEFINE_DOUBLE_ROUND_PASS(suffix, attributes)                                      \
    attributes static void double_round_pass_##suffix(const cell_##suffix *restrict in,         \
                                                      cell_##suffix *restrict out) {            \
        block_##suffix first_low, first_high; /* r[0] */                                         \
        SBOX(first_low, first_high, in[0].low, in[0].high, in[HALF].low, in[HALF].high);  \
        block_##suffix prev_low = first_low, prev_high = first_high; /* r[729 - 2j] */           \
        block_##suffix a_low = in[0].low, a_high = in[0].high;             /* in[j] */           \
        block_##suffix b_low = in[QUARTER].low, b_high = in[QUARTER].high; /* in[182 + j] */     \
        for (int j = 0; j < QUARTER; j++) {                                               \
            const cell_##suffix *a = &in[j + 1], *b = &in[QUARTER + 1 + j];                      \
            const cell_##suffix *c = &in[HALF + 1 + j], *d = &in[HALF + QUARTER + 1 + j];        \
            block_##suffix r0_low, r0_high, r1_low, r1_high, r2_low, r2_high, r3_low, r3_high;   \
            SBOX(r0_low, r0_high, d->low, d->high, b_low, b_high);     /* r[364 - 2j] */  \
            SBOX(r1_low, r1_high, c->low, c->high, a_low, a_high);     /* r[728 - 2j] */  \
            SBOX(r2_low, r2_high, b->low, b->high, d->low, d->high);   /* r[363 - 2j] */  \
            SBOX(r3_low, r3_high, a->low, a->high, c->low, c->high);   /* r[727 - 2j] */  \
            cell_##suffix *o = &out[4 * j];                                                      \
            SBOX(o[0].low, o[0].high, prev_low, prev_high, r0_low, r0_high);              \
            SBOX(o[1].low, o[1].high, r0_low, r0_high, r1_low, r1_high);                  \
            SBOX(o[2].low, o[2].high, r1_low, r1_high, r2_low, r2_high);                  \
            SBOX(o[3].low, o[3].high, r2_low, r2_high, r3_low, r3_high);                  \
            prev_low = r3_low;                                                            \
            prev_high = r3_high;                                                          \
            a_low = a->low;                                                               \
            a_high = a->high;                                                             \
            b_low = b->low;                                                               \
            b_high = b->high;                                                             \
        }                                                                                 \
        block_##suffix last_low, last_high; /* r[365] */                                         \
        SBOX(last_low, last_high, in[QUARTER].low, in[QUARTER].high, in[HALF + QUARTER].low, \
             in[HALF + QUARTER].high);                                                    \
        SBOX(out[2 * HALF].low, out[2 * HALF].high, last_low, last_high, first_low,       \
             first_high);                                                                 \
    }

/* `rounds` rounds of the state in `state`; returns the buffer holding the result. */
#define DEFINE_ROUNDS(suffix, attributes)                                                 \
    attributes static cell_##suffix *rounds_##suffix(cell_##suffix *state, cell_##suffix *scratch, int rounds) { \
        cell_##suffix *in = state, *out = scratch, *swap;                                        \
        for (; rounds >= 2; rounds -= 2) {                                                \
            double_round_pass_##suffix(in, out);                                          \
            swap = in, in = out, out = swap;                                              \
        }                                                                                 \
        if (rounds) {                                                                     \
            round_pass_##suffix(in, out);                                                 \
            swap = in, in = out, out = swap;                                              \
        }                                                                                 \
        return in;                                                                        \
    }

/* A kernel on blocks of `words` 64-bit words (64 * words lanes) per plane. */
#define DEFINE_KERNEL(suffix, attributes, words)                                      \
    typedef uint64_t block_##suffix __attribute__((vector_size(8 * (words))));        \
    typedef struct {                                                                  \
        block_##suffix low;                                                           \
        block_##suffix high;                                                          \
    } cell_##suffix;                                                                  \
    DEFINE_ROUND_PASS(suffix, attributes)                                             \
    DEFINE_DOUBLE_ROUND_PASS(suffix, attributes)                                      \
    DEFINE_ROUNDS(suffix, attributes)                                                 \
    static word_t *rounds_words_##suffix(word_t *state, word_t *scratch, int rounds) { \
        return (word_t *)rounds_##suffix((cell_##suffix *)state, (cell_##suffix *)scratch, rounds); \
    }

/* The portable kernel: whatever the compiler's target has (SSE2 pairs, NEON pairs). */
DEFINE_KERNEL(generic, , 4)

typedef word_t *(*rounds_fn)(word_t *, word_t *, int);

/* The kernel in use: its rounds, its block width in words and its name. */
typedef struct {
    rounds_fn run;
    int words;
    const char *name;
} kernel_t;

static kernel_t active = {rounds_words_generic, 4, "generic"};

#if defined(__x86_64__) || defined(__i386__)
/* The same code compiled for AVX2 (one instruction per 256-lane operation). */
DEFINE_KERNEL(avx2, __attribute__((target("avx2"))), 4)
/* With AVX-512VL the compiler folds each S-box's five gates into three ternary-logic
 * instructions; on blocks of 128 lanes, because two 128-lane states (46 KiB) stay in
 * a level-1 data cache where two of 256 lanes do not (measured: 16 % more candidates
 * per second than 256-lane blocks on the same instructions, which are bound by the
 * level-2 cache's bandwidth). */
DEFINE_KERNEL(avx512, __attribute__((target("avx2,avx512f,avx512vl"))), 2)
#endif

static void select_kernel(void) {
    active = (kernel_t){rounds_words_generic, 4, "generic"};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
        active = (kernel_t){rounds_words_avx512, 2, "avx512"};
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        active = (kernel_t){rounds_words_avx2, 4, "avx2"};
        return;
    }
    active.name = "sse2";
#elif defined(__aarch64__)
    active.name = "neon";
#endif
}

PyDoc_STRVAR(use_instructions_doc,
             "use_instructions(name)\n--\n\n"
             "'best' (the default: AVX-512VL, else AVX2, where the CPU has them), 'avx2'\n"
             "(x86 with AVX2 only) or 'portable' (the build's baseline, as on CPUs without\n"
             "AVX2 and on ARM), so tests can run each on one machine. Returns the name of\n"
             "the instructions now in use.");

static PyObject *use_instructions(PyObject *module, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:use_instructions", &name)) return NULL;
    if (strcmp(name, "best") == 0) {
        select_kernel();
#if defined(__x86_64__) || defined(__i386__)
    } else if (strcmp(name, "avx2") == 0) {
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2")) {
            PyErr_SetString(PyExc_ValueError, "this CPU has no AVX2");
            return NULL;
        }
        active = (kernel_t){rounds_words_avx2, 4, "avx2"};
#endif
    } else if (strcmp(name, "portable") == 0) {
        active = (kernel_t){rounds_words_generic, 4, "portable"};
    } else {
        PyErr_Format(PyExc_ValueError, "instructions must be 'best', 'avx2' or 'portable', got %s",
                     name);
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "KERNEL", active.name) < 0) return NULL;
    return PyUnicode_FromString(active.name);
}

/* Words of one block's state: 729 cells of `words` low then `words` high words. */
#define BLOCK_STATE_WORDS(words) ((size_t)STATE_LENGTH * 2 * (size_t)(words))

/* Two cell buffers for one block of the widest kernel, aligned for the vector loads. */
typedef struct {
    word_t *state;
    word_t *scratch;
    void *memory;
} workspace_t;

static int workspace_open(workspace_t *space) {
    size_t size = 2 * BLOCK_STATE_WORDS(MAX_BLOCK_WORDS) * sizeof(word_t) + 64;
    space->memory = malloc(size);
    if (space->memory == NULL) return -1;
    uintptr_t aligned = ((uintptr_t)space->memory + 63) & ~(uintptr_t)63;
    space->state = (word_t *)aligned;
    space->scratch = space->state + BLOCK_STATE_WORDS(MAX_BLOCK_WORDS);
    return 0;
}

static void workspace_close(workspace_t *space) { free(space->memory); }

/* Copy words [first, first + count) of every row of the planes into the cells of a
 * block `block_words` wide (the rest zero). */
static void load_block(word_t *cells, int block_words, const uint64_t *low,
                       const uint64_t *high, Py_ssize_t words, Py_ssize_t first,
                       Py_ssize_t count) {
    memset(cells, 0, BLOCK_STATE_WORDS(block_words) * sizeof(word_t));
    for (int row = 0; row < STATE_LENGTH; row++) {
        word_t *cell = cells + (size_t)row * 2 * block_words;
        memcpy(cell, low + row * words + first, (size_t)count * 8);
        memcpy(cell + block_words, high + row * words + first, (size_t)count * 8);
    }
}

static void store_block(const word_t *cells, int block_words, uint64_t *low, uint64_t *high,
                        Py_ssize_t words, Py_ssize_t first, Py_ssize_t count) {
    for (int row = 0; row < STATE_LENGTH; row++) {
        const word_t *cell = cells + (size_t)row * 2 * block_words;
        memcpy(low + row * words + first, cell, (size_t)count * 8);
        memcpy(high + row * words + first, cell + block_words, (size_t)count * 8);
    }
}

static int check_rounds(int rounds) {
    if (rounds != 27 && rounds != 81) {
        PyErr_Format(PyExc_ValueError, "Curl-P rounds must be 27 or 81, got %d", rounds);
        return -1;
    }
    return 0;
}

/* Writable, C-contiguous buffer of 729 * words uint64 (a numpy (729, words) view). */
static int get_planes(PyObject *object, Py_buffer *view, const char *name) {
    if (PyObject_GetBuffer(object, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != 8 || view->len % (STATE_LENGTH * 8) != 0 || view->len == 0) {
        PyErr_Format(PyExc_ValueError, "%s must hold 729 rows of 64-bit words", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(transform_doc,
             "transform(low, high, rounds)\n--\n\n"
             "Apply Curl-P (27 or 81 rounds) in place to bit-sliced planes of shape\n"
             "(729, words), C-contiguous uint64, as curl.CurlBatch keeps them.");

static PyObject *transform(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *low_object, *high_object;
    int rounds;
    if (!PyArg_ParseTuple(args, "OOi:transform", &low_object, &high_object, &rounds)) return NULL;
    if (check_rounds(rounds) < 0) return NULL;
    Py_buffer low, high;
    if (get_planes(low_object, &low, "low") < 0) return NULL;
    if (get_planes(high_object, &high, "high") < 0) {
        PyBuffer_Release(&low);
        return NULL;
    }
    PyObject *result = NULL;
    workspace_t space;
    if (low.len != high.len) {
        PyErr_SetString(PyExc_ValueError, "low and high planes differ in shape");
    } else if (workspace_open(&space) < 0) {
        PyErr_NoMemory();
    } else {
        Py_ssize_t words = low.len / (STATE_LENGTH * 8);
        uint64_t *low_words = low.buf, *high_words = high.buf;
        const kernel_t kernel = active;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t first = 0; first < words; first += kernel.words) {
            Py_ssize_t count = words - first < kernel.words ? words - first : kernel.words;
            load_block(space.state, kernel.words, low_words, high_words, words, first, count);
            word_t *done = kernel.run(space.state, space.scratch, rounds);
            store_block(done, kernel.words, low_words, high_words, words, first, count);
        }
        Py_END_ALLOW_THREADS
        workspace_close(&space);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&low);
    PyBuffer_Release(&high);
    return result;
}

/* Buffer of exactly `length` bytes, C-contiguous; writable when asked. */
static int get_exact(PyObject *object, Py_buffer *view, Py_ssize_t length, int writable,
                     const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) < 0) return -1;
    if (view->len != length) {
        PyErr_Format(PyExc_ValueError, "%s has %zd bytes, expected %zd", name, view->len, length);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(pack_trits_doc,
             "pack_trits(trits, lanes, length, low, high)\n--\n\n"
             "Bit-slice (lanes, length) int8 trits into (length, words) uint64 planes, as\n"
             "curl.pack_lanes does: lane l is bit l % 64 of word l // 64, and lanes past\n"
             "`lanes` hold zero trits.");

static PyObject *pack_trits(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *trits_object, *low_object, *high_object;
    Py_ssize_t lanes, length;
    if (!PyArg_ParseTuple(args, "OnnOO:pack_trits", &trits_object, &lanes, &length, &low_object,
                          &high_object))
        return NULL;
    if (lanes < 1 || length < 1) {
        PyErr_SetString(PyExc_ValueError, "lanes and length must be positive");
        return NULL;
    }
    Py_buffer trits, low, high;
    if (get_exact(trits_object, &trits, lanes * length, 0, "trits") < 0) return NULL;
    if (PyObject_GetBuffer(low_object, &low, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&trits);
        return NULL;
    }
    Py_ssize_t words = low.len / 8 / length;
    if (low.len != words * 8 * length || words * 64 < lanes ||
        get_exact(high_object, &high, low.len, 1, "high") < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "planes must be (length, words)");
        PyBuffer_Release(&trits);
        PyBuffer_Release(&low);
        return NULL;
    }
    const int8_t *source = trits.buf;
    uint64_t *low_words = low.buf, *high_words = high.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t word = 0; word < words; word++) {
        Py_ssize_t first = word * 64;
        int count = lanes - first >= 64 ? 64 : (lanes > first ? (int)(lanes - first) : 0);
        uint64_t padding = count == 64 ? 0 : ALL_ONES << count;
        for (Py_ssize_t row = 0; row < length; row++) {
            uint64_t low_bits = padding, high_bits = padding;
            const int8_t *trit = source + first * length + row;
            for (int bit = 0; bit < count; bit++, trit += length) {
                low_bits |= (uint64_t)(*trit != 1) << bit;
                high_bits |= (uint64_t)(*trit != -1) << bit;
            }
            low_words[row * words + word] = low_bits;
            high_words[row * words + word] = high_bits;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&trits);
    PyBuffer_Release(&low);
    PyBuffer_Release(&high);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unpack_trits_doc,
             "unpack_trits(low, high, length, lanes, trits)\n--\n\n"
             "Inverse of pack_trits: (length, words) planes into (lanes, length) int8 trits.");

static PyObject *unpack_trits(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *low_object, *high_object, *trits_object;
    Py_ssize_t lanes, length;
    if (!PyArg_ParseTuple(args, "OOnnO:unpack_trits", &low_object, &high_object, &length, &lanes,
                          &trits_object))
        return NULL;
    if (lanes < 1 || length < 1) {
        PyErr_SetString(PyExc_ValueError, "lanes and length must be positive");
        return NULL;
    }
    Py_buffer trits, low, high;
    if (PyObject_GetBuffer(low_object, &low, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t words = low.len / 8 / length;
    if (low.len != words * 8 * length || words * 64 < lanes ||
        get_exact(high_object, &high, low.len, 0, "high") < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "planes must be (length, words)");
        PyBuffer_Release(&low);
        return NULL;
    }
    if (get_exact(trits_object, &trits, lanes * length, 1, "trits") < 0) {
        PyBuffer_Release(&low);
        PyBuffer_Release(&high);
        return NULL;
    }
    const uint64_t *low_words = low.buf, *high_words = high.buf;
    int8_t *target = trits.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t word = 0; word * 64 < lanes; word++) {
        Py_ssize_t first = word * 64;
        int count = lanes - first >= 64 ? 64 : (int)(lanes - first);
        for (Py_ssize_t row = 0; row < length; row++) {
            uint64_t low_bits = low_words[row * words + word];
            uint64_t high_bits = high_words[row * words + word];
            int8_t *trit = target + first * length + row;
            for (int bit = 0; bit < count; bit++, trit += length)
                *trit = (int8_t)((int)((high_bits >> bit) & 1) - (int)((low_bits >> bit) & 1));
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&low);
    PyBuffer_Release(&high);
    PyBuffer_Release(&trits);
    Py_RETURN_NONE;
}

/*
 * One sponge on its own ("horizontal"): each plane is a 729-bit vector in 12
 * words, kept in the permuted order of curl.py's Curl class so that a round is a
 * rotation and five gates on whole words: after r rounds bit j holds trit
 * m_r * j with m_r = (-2)^r (mod 729), and round r reads b at j + offset_r.
 */
#define SINGLE_WORDS 12
#define TOP_BITS (STATE_LENGTH - 64 * (SINGLE_WORDS - 1))

typedef struct {
    int offsets[81];
    uint16_t natural_order[STATE_LENGTH]; /* permuted bit that holds natural trit x */
} single_plan_t;

static single_plan_t single_plans[2]; /* 27 and 81 rounds */

static int inverse_mod_729(int value) {
    for (int candidate = 1; candidate < STATE_LENGTH; candidate++)
        if (value * candidate % STATE_LENGTH == 1) return candidate;
    return 0; /* not reached: every value here is prime to 3 */
}

static void build_single_plan(single_plan_t *plan, int rounds) {
    int multiplier = 1;
    for (int round = 0; round < rounds; round++) {
        plan->offsets[round] = HALF * inverse_mod_729(multiplier) % STATE_LENGTH;
        multiplier = (STATE_LENGTH - 2 * multiplier % STATE_LENGTH) % STATE_LENGTH;
    }
    int inverse = inverse_mod_729(multiplier);
    for (int trit = 0; trit < STATE_LENGTH; trit++)
        plan->natural_order[trit] = (uint16_t)(trit * inverse % STATE_LENGTH);
}

/* rotated[j] = bits[(j + offset) mod 729] */
static void rotate_729(const uint64_t *bits, uint64_t *rotated, int offset) {
    uint64_t doubled[2 * SINGLE_WORDS] = {0};
    memcpy(doubled, bits, sizeof(uint64_t) * SINGLE_WORDS);
    for (int word = 0; word < SINGLE_WORDS; word++) { /* bits again from bit 729 = 11 * 64 + 25 */
        doubled[word + SINGLE_WORDS - 1] |= bits[word] << TOP_BITS;
        doubled[word + SINGLE_WORDS] |= bits[word] >> (64 - TOP_BITS);
    }
    int first = offset >> 6, shift = offset & 63;
    for (int word = 0; word < SINGLE_WORDS; word++) {
        uint64_t low = doubled[first + word], high = doubled[first + word + 1];
        rotated[word] = shift ? (low >> shift) | (high << (64 - shift)) : low;
    }
    rotated[SINGLE_WORDS - 1] &= ((uint64_t)1 << TOP_BITS) - 1;
}

static void single_transform(uint64_t *low, uint64_t *high, const single_plan_t *plan,
                             int rounds) {
    uint64_t b_low[SINGLE_WORDS], b_high[SINGLE_WORDS];
    for (int round = 0; round < rounds; round++) {
        rotate_729(low, b_low, plan->offsets[round]);
        rotate_729(high, b_high, plan->offsets[round]);
        for (int word = 0; word < SINGLE_WORDS; word++) {
            uint64_t carry = low[word] & b_low[word];
            uint64_t a_high = high[word];
            high[word] = (a_high & b_high[word]) ^ carry;
            low[word] = low[word] ^ a_high ^ carry;
        }
    }
    uint64_t natural_low[SINGLE_WORDS] = {0}, natural_high[SINGLE_WORDS] = {0};
    for (int trit = 0; trit < STATE_LENGTH; trit++) {
        int bit = plan->natural_order[trit];
        natural_low[trit >> 6] |= ((low[bit >> 6] >> (bit & 63)) & 1) << (trit & 63);
        natural_high[trit >> 6] |= ((high[bit >> 6] >> (bit & 63)) & 1) << (trit & 63);
    }
    memcpy(low, natural_low, sizeof natural_low);
    memcpy(high, natural_high, sizeof natural_high);
}

PyDoc_STRVAR(transform_single_doc,
             "transform_single(planes, rounds)\n--\n\n"
             "Apply Curl-P (27 or 81 rounds) in place to one sponge given as 192 bytes:\n"
             "its low plane then its high plane, each 729 bits little-endian in 96 bytes\n"
             "(bit x is trit x), as curl.Curl keeps them in two integers.");

/* 192 bytes (low plane, high plane, 729 bits each, little-endian) to words and back. */
static void planes_to_words(const unsigned char *bytes, uint64_t *low, uint64_t *high) {
    for (int word = 0; word < SINGLE_WORDS; word++) { /* little-endian whatever the CPU */
        uint64_t low_word = 0, high_word = 0;
        for (int byte = 7; byte >= 0; byte--) {
            low_word = (low_word << 8) | bytes[8 * word + byte];
            high_word = (high_word << 8) | bytes[8 * SINGLE_WORDS + 8 * word + byte];
        }
        low[word] = low_word;
        high[word] = high_word;
    }
    low[SINGLE_WORDS - 1] &= ((uint64_t)1 << TOP_BITS) - 1;
    high[SINGLE_WORDS - 1] &= ((uint64_t)1 << TOP_BITS) - 1;
}

static void words_to_planes(const uint64_t *low, const uint64_t *high, unsigned char *out) {
    for (int word = 0; word < SINGLE_WORDS; word++) {
        for (int byte = 0; byte < 8; byte++) {
            out[8 * word + byte] = (unsigned char)(low[word] >> (8 * byte));
            out[8 * SINGLE_WORDS + 8 * word + byte] = (unsigned char)(high[word] >> (8 * byte));
        }
    }
}

static PyObject *transform_single(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer planes;
    int rounds;
    if (!PyArg_ParseTuple(args, "w*i:transform_single", &planes, &rounds)) return NULL;
    if (check_rounds(rounds) < 0 || planes.len != 2 * 8 * SINGLE_WORDS) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "planes must be 192 bytes");
        PyBuffer_Release(&planes);
        return NULL;
    }
    uint64_t low[SINGLE_WORDS], high[SINGLE_WORDS];
    planes_to_words(planes.buf, low, high);
    single_transform(low, high, &single_plans[rounds == 81], rounds);
    words_to_planes(low, high, planes.buf);
    PyBuffer_Release(&planes);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(absorb_single_doc,
             "absorb_single(planes, rounds, trits)\n--\n\n"
             "Absorb int8 trits into one sponge given as transform_single takes it: each\n"
             "243 trits (the last chunk may be shorter) replace the state's first trits,\n"
             "then a transform, as curl.Curl.absorb does.");

static PyObject *absorb_single(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer planes, trits;
    int rounds;
    if (!PyArg_ParseTuple(args, "w*iy*:absorb_single", &planes, &rounds, &trits)) return NULL;
    if (check_rounds(rounds) < 0 || planes.len != 2 * 8 * SINGLE_WORDS || trits.len < 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "planes must be 192 bytes and trits not empty");
        PyBuffer_Release(&planes);
        PyBuffer_Release(&trits);
        return NULL;
    }
    uint64_t low[SINGLE_WORDS], high[SINGLE_WORDS];
    planes_to_words(planes.buf, low, high);
    const int8_t *source = trits.buf;
    const single_plan_t *plan = &single_plans[rounds == 81];
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t first = 0; first < trits.len; first += HASH_LENGTH) {
        int count = trits.len - first < HASH_LENGTH ? (int)(trits.len - first) : HASH_LENGTH;
        for (int trit = 0; trit < count; trit++) {
            uint64_t bit = (uint64_t)1 << (trit & 63);
            int8_t value = source[first + trit];
            low[trit >> 6] = (low[trit >> 6] & ~bit) | (value != 1 ? bit : 0);
            high[trit >> 6] = (high[trit >> 6] & ~bit) | (value != -1 ? bit : 0);
        }
        single_transform(low, high, plan, rounds);
    }
    Py_END_ALLOW_THREADS
    words_to_planes(low, high, planes.buf);
    PyBuffer_Release(&planes);
    PyBuffer_Release(&trits);
    Py_RETURN_NONE;
}

/* Balanced trit as a whole word of each plane (every lane alike). */
static inline void trit_planes(int trit, uint64_t *low, uint64_t *high) {
    *low = trit != 1 ? ALL_ONES : 0;
    *high = trit != -1 ? ALL_ONES : 0;
}

/* Read-only, C-contiguous (729, words) uint64 planes of the given word count. */
static int get_base_planes(PyObject *object, Py_buffer *view, Py_ssize_t words) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != STATE_LENGTH * words * 8) {
        PyErr_SetString(PyExc_ValueError, "base planes must be (729, lanes / 64) 64-bit words");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(search_nonce_doc,
             "search_nonce(base_low, base_high, lanes, counter_row, weight, first, stop)\n--\n\n"
             "Curl-P-81 proof-of-work search in the order of pow._search. The base planes\n"
             "(729, lanes / 64) hold every lane's state before the counter: the sponge\n"
             "state after the transaction's first 32 blocks with its last block in rows\n"
             "0..243, each lane's own nonce digits included. For each counter in\n"
             "[first, stop) rows counter_row..counter_row + 27 get the counter's base-3\n"
             "digits minus one in every lane, and the hash's last `weight` trits must be\n"
             "zero. Returns (counter, lane) of the first counter with a hit and its\n"
             "lowest lane, or None.");

static PyObject *search_nonce(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *low_object, *high_object;
    Py_ssize_t lanes, first, stop;
    int counter_row, weight;
    if (!PyArg_ParseTuple(args, "OOniinn:search_nonce", &low_object, &high_object, &lanes,
                          &counter_row, &weight, &first, &stop))
        return NULL;
    if (lanes < 64 || lanes % 64) {
        PyErr_SetString(PyExc_ValueError, "lanes must be a positive multiple of 64");
        return NULL;
    }
    if (counter_row < NONCE_ROW || counter_row + COUNTER_TRITS > HASH_LENGTH) {
        PyErr_SetString(PyExc_ValueError, "the counter must lie within the nonce");
        return NULL;
    }
    if (weight < 1 || weight > HASH_LENGTH) {
        PyErr_SetString(PyExc_ValueError, "weight must be within 1..243");
        return NULL;
    }
    if (first < 0 || stop < first) {
        PyErr_SetString(PyExc_ValueError, "bad counter range");
        return NULL;
    }
    Py_ssize_t words = lanes / 64;
    Py_buffer low, high;
    if (get_base_planes(low_object, &low, words) < 0) return NULL;
    if (get_base_planes(high_object, &high, words) < 0) {
        PyBuffer_Release(&low);
        return NULL;
    }
    const kernel_t kernel = active;
    const int block_words = kernel.words;
    const size_t block_size = BLOCK_STATE_WORDS(block_words);
    Py_ssize_t blocks = (words + block_words - 1) / block_words;
    void *base_memory = malloc((size_t)blocks * block_size * sizeof(word_t) + 64);
    workspace_t space;
    if (base_memory == NULL || workspace_open(&space) < 0) {
        free(base_memory);
        PyBuffer_Release(&low);
        PyBuffer_Release(&high);
        return PyErr_NoMemory();
    }
    word_t *bases = (word_t *)(((uintptr_t)base_memory + 63) & ~(uintptr_t)63);
    Py_ssize_t found_counter = -1, found_lane = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t block = 0; block < blocks; block++) {
        Py_ssize_t word = block * block_words;
        Py_ssize_t count = words - word < block_words ? words - word : block_words;
        load_block(bases + block * block_size, block_words, low.buf, high.buf, words, word, count);
    }
    for (Py_ssize_t counter = first; counter < stop && found_counter < 0; counter++) {
        uint64_t counter_low[COUNTER_TRITS], counter_high[COUNTER_TRITS];
        Py_ssize_t value = counter;
        for (int digit = 0; digit < COUNTER_TRITS; digit++, value /= 3)
            trit_planes((int)(value % 3) - 1, &counter_low[digit], &counter_high[digit]);
        for (Py_ssize_t block = 0; block < blocks; block++) {
            memcpy(space.state, bases + block * block_size, block_size * sizeof(word_t));
            for (int digit = 0; digit < COUNTER_TRITS; digit++) {
                word_t *cell = space.state + (size_t)(counter_row + digit) * 2 * block_words;
                for (int word = 0; word < block_words; word++) {
                    cell[word] = counter_low[digit];
                    cell[block_words + word] = counter_high[digit];
                }
            }
            word_t *done = kernel.run(space.state, space.scratch, 81);
            /* A zero trit is (1, 1): AND both planes over the hash's last `weight` trits;
             * the lowest word with a hit holds the lowest lane. */
            for (int word = 0; word < block_words; word++) {
                Py_ssize_t lane = (block * block_words + word) * 64;
                if (lane >= lanes) break;
                uint64_t zero = ALL_ONES;
                for (int row = HASH_LENGTH - weight; row < HASH_LENGTH && zero; row++) {
                    const word_t *cell = done + (size_t)row * 2 * block_words;
                    zero &= cell[word] & cell[block_words + word];
                }
                if (zero) {
                    found_counter = counter;
                    found_lane = lane + __builtin_ctzll(zero);
                    break;
                }
            }
            if (found_counter >= 0) break;
        }
    }
    Py_END_ALLOW_THREADS
    workspace_close(&space);
    free(base_memory);
    PyBuffer_Release(&low);
    PyBuffer_Release(&high);
    if (found_counter >= 0) return Py_BuildValue("(nn)", found_counter, found_lane);
    Py_RETURN_NONE;
}

/*
 * Kerl: Keccak-384 over 243-trit chunks (see protocol/kerl.py, whose pure-Python
 * and numpy code this matches byte for byte). A chunk's first 242 trits are a
 * balanced-ternary integer, fed to Keccak as 48 bytes of big-endian two's
 * complement; a digest maps back as the balanced residue modulo 3^242 with a
 * zero 243rd trit. Numbers are little-endian arrays of 32-bit limbs.
 */
#define KECCAK_RATE 104
#define KERL_BYTES 48
#define KERL_TRITS 242 /* trits of a chunk that Kerl hashes */
#define LIMBS 13       /* 416 bits: room for 3^242 + 2^384 */
#define GROUP_TRITS 20 /* 3^20 < 2^32: trits converted per limb operation */
#define GROUP_MODULUS 3486784401u

static const uint64_t keccak_round_constants[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL,
    0x8000000080008000ULL, 0x000000000000808BULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008AULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
    0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800AULL, 0x800000008000000AULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

#define ROTATE(value, shift) (((value) << (shift)) | ((value) >> ((64 - (shift)) & 63)))

/* Keccak-f[1600] on 25 lanes (index x + 5y), unrolled: theta, rho and pi, chi, iota. */
static void keccak_f1600(uint64_t *lanes) {
    uint64_t a00 = lanes[0], a10 = lanes[1], a20 = lanes[2], a30 = lanes[3], a40 = lanes[4],
             a01 = lanes[5], a11 = lanes[6], a21 = lanes[7], a31 = lanes[8], a41 = lanes[9],
             a02 = lanes[10], a12 = lanes[11], a22 = lanes[12], a32 = lanes[13], a42 = lanes[14],
             a03 = lanes[15], a13 = lanes[16], a23 = lanes[17], a33 = lanes[18], a43 = lanes[19],
             a04 = lanes[20], a14 = lanes[21], a24 = lanes[22], a34 = lanes[23], a44 = lanes[24];
    for (int round = 0; round < 24; round++) {
        uint64_t c0 = a00 ^ a01 ^ a02 ^ a03 ^ a04;
        uint64_t c1 = a10 ^ a11 ^ a12 ^ a13 ^ a14;
        uint64_t c2 = a20 ^ a21 ^ a22 ^ a23 ^ a24;
        uint64_t c3 = a30 ^ a31 ^ a32 ^ a33 ^ a34;
        uint64_t c4 = a40 ^ a41 ^ a42 ^ a43 ^ a44;
        uint64_t d0 = c4 ^ ROTATE(c1, 1);
        uint64_t d1 = c0 ^ ROTATE(c2, 1);
        uint64_t d2 = c1 ^ ROTATE(c3, 1);
        uint64_t d3 = c2 ^ ROTATE(c4, 1);
        uint64_t d4 = c3 ^ ROTATE(c0, 1);
        a00 ^= d0; a10 ^= d1; a20 ^= d2; a30 ^= d3; a40 ^= d4;
        a01 ^= d0; a11 ^= d1; a21 ^= d2; a31 ^= d3; a41 ^= d4;
        a02 ^= d0; a12 ^= d1; a22 ^= d2; a32 ^= d3; a42 ^= d4;
        a03 ^= d0; a13 ^= d1; a23 ^= d2; a33 ^= d3; a43 ^= d4;
        a04 ^= d0; a14 ^= d1; a24 ^= d2; a34 ^= d3; a44 ^= d4;
        uint64_t b00 = a00;
        uint64_t b02 = ROTATE(a10, 1);
        uint64_t b04 = ROTATE(a20, 62);
        uint64_t b01 = ROTATE(a30, 28);
        uint64_t b03 = ROTATE(a40, 27);
        uint64_t b13 = ROTATE(a01, 36);
        uint64_t b10 = ROTATE(a11, 44);
        uint64_t b12 = ROTATE(a21, 6);
        uint64_t b14 = ROTATE(a31, 55);
        uint64_t b11 = ROTATE(a41, 20);
        uint64_t b21 = ROTATE(a02, 3);
        uint64_t b23 = ROTATE(a12, 10);
        uint64_t b20 = ROTATE(a22, 43);
        uint64_t b22 = ROTATE(a32, 25);
        uint64_t b24 = ROTATE(a42, 39);
        uint64_t b34 = ROTATE(a03, 41);
        uint64_t b31 = ROTATE(a13, 45);
        uint64_t b33 = ROTATE(a23, 15);
        uint64_t b30 = ROTATE(a33, 21);
        uint64_t b32 = ROTATE(a43, 8);
        uint64_t b42 = ROTATE(a04, 18);
        uint64_t b44 = ROTATE(a14, 2);
        uint64_t b41 = ROTATE(a24, 61);
        uint64_t b43 = ROTATE(a34, 56);
        uint64_t b40 = ROTATE(a44, 14);
        a00 = b00 ^ (~b10 & b20);
        a10 = b10 ^ (~b20 & b30);
        a20 = b20 ^ (~b30 & b40);
        a30 = b30 ^ (~b40 & b00);
        a40 = b40 ^ (~b00 & b10);
        a01 = b01 ^ (~b11 & b21);
        a11 = b11 ^ (~b21 & b31);
        a21 = b21 ^ (~b31 & b41);
        a31 = b31 ^ (~b41 & b01);
        a41 = b41 ^ (~b01 & b11);
        a02 = b02 ^ (~b12 & b22);
        a12 = b12 ^ (~b22 & b32);
        a22 = b22 ^ (~b32 & b42);
        a32 = b32 ^ (~b42 & b02);
        a42 = b42 ^ (~b02 & b12);
        a03 = b03 ^ (~b13 & b23);
        a13 = b13 ^ (~b23 & b33);
        a23 = b23 ^ (~b33 & b43);
        a33 = b33 ^ (~b43 & b03);
        a43 = b43 ^ (~b03 & b13);
        a04 = b04 ^ (~b14 & b24);
        a14 = b14 ^ (~b24 & b34);
        a24 = b24 ^ (~b34 & b44);
        a34 = b34 ^ (~b44 & b04);
        a44 = b44 ^ (~b04 & b14);
        a00 ^= keccak_round_constants[round];
    }
    lanes[0] = a00; lanes[1] = a10; lanes[2] = a20; lanes[3] = a30; lanes[4] = a40;
    lanes[5] = a01; lanes[6] = a11; lanes[7] = a21; lanes[8] = a31; lanes[9] = a41;
    lanes[10] = a02; lanes[11] = a12; lanes[12] = a22; lanes[13] = a32; lanes[14] = a42;
    lanes[15] = a03; lanes[16] = a13; lanes[17] = a23; lanes[18] = a33; lanes[19] = a43;
    lanes[20] = a04; lanes[21] = a14; lanes[22] = a24; lanes[23] = a34; lanes[24] = a44;
}

typedef struct {
    uint64_t lanes[25];
    int offset; /* bytes absorbed into the current block */
} keccak_t;

static void keccak_reset(keccak_t *sponge) {
    memset(sponge->lanes, 0, sizeof sponge->lanes);
    sponge->offset = 0;
}

static void keccak_absorb(keccak_t *sponge, const unsigned char *bytes, int length) {
    for (int i = 0; i < length; i++) {
        sponge->lanes[sponge->offset >> 3] ^= (uint64_t)bytes[i] << (8 * (sponge->offset & 7));
        if (++sponge->offset == KECCAK_RATE) {
            keccak_f1600(sponge->lanes);
            sponge->offset = 0;
        }
    }
}

/* Keccak's original padding (0x01 ... 0x80), then the first 48 bytes; consumes the sponge. */
static void keccak_digest(keccak_t *sponge, unsigned char *digest) {
    sponge->lanes[sponge->offset >> 3] ^= (uint64_t)0x01 << (8 * (sponge->offset & 7));
    sponge->lanes[(KECCAK_RATE - 1) >> 3] ^= (uint64_t)0x80 << (8 * ((KECCAK_RATE - 1) & 7));
    keccak_f1600(sponge->lanes);
    for (int i = 0; i < KERL_BYTES; i++)
        digest[i] = (unsigned char)(sponge->lanes[i >> 3] >> (8 * (i & 7)));
}

static uint32_t trit_modulus[LIMBS]; /* 3^242 */
static uint32_t trit_offset[LIMBS];  /* (3^242 - 1) / 2 */

/* number = number * factor + addend */
static void limbs_multiply_add(uint32_t *number, uint32_t factor, uint32_t addend) {
    uint64_t carry = addend;
    for (int i = 0; i < LIMBS; i++) {
        carry += (uint64_t)number[i] * factor;
        number[i] = (uint32_t)carry;
        carry >>= 32;
    }
}

static void limbs_add(uint32_t *number, const uint32_t *addend) {
    uint64_t carry = 0;
    for (int i = 0; i < LIMBS; i++) {
        carry += (uint64_t)number[i] + addend[i];
        number[i] = (uint32_t)carry;
        carry >>= 32;
    }
}

static void limbs_subtract(uint32_t *number, const uint32_t *subtrahend) {
    int64_t borrow = 0;
    for (int i = 0; i < LIMBS; i++) {
        int64_t difference = (int64_t)number[i] - subtrahend[i] + borrow;
        number[i] = (uint32_t)difference;
        borrow = difference < 0 ? -1 : 0;
    }
}

static int limbs_compare(const uint32_t *a, const uint32_t *b) {
    for (int i = LIMBS - 1; i >= 0; i--)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* number = number / divisor for a number below 2^(32 top); returns the remainder */
static uint32_t limbs_divide_top(uint32_t *number, int top, uint32_t divisor) {
    uint64_t remainder = 0;
    for (int i = top - 1; i >= 0; i--) {
        uint64_t part = (remainder << 32) | number[i];
        number[i] = (uint32_t)(part / divisor);
        remainder = part % divisor;
    }
    return (uint32_t)remainder;
}

static void kerl_plan(void) {
    memset(trit_modulus, 0, sizeof trit_modulus);
    trit_modulus[0] = 1;
    for (int i = 0; i < KERL_TRITS; i++) limbs_multiply_add(trit_modulus, 3, 0);
    memcpy(trit_offset, trit_modulus, sizeof trit_offset);
    trit_offset[0] -= 1; /* 3^242 is odd: no borrow */
    limbs_divide_top(trit_offset, LIMBS, 2);
}

/* The 48 bytes Kerl absorbs for the chunk whose trits plus one are the digits of `number`
 * (value + offset, below 3^242): value in two's complement, big-endian. Changes `number`. */
static void residue_to_kerl_bytes(uint32_t *number, unsigned char *bytes) {
    limbs_subtract(number, trit_offset); /* two's complement modulo 2^416 */
    for (int i = 0; i < KERL_BYTES; i++) /* big-endian, the low 384 bits */
        bytes[KERL_BYTES - 1 - i] = (unsigned char)(number[i >> 2] >> (8 * (i & 3)));
}

/* The 48 bytes Kerl absorbs for a chunk (its first 242 trits). */
static void trits_to_kerl_bytes(const int8_t *trits, unsigned char *bytes) {
    uint32_t number[LIMBS] = {0}; /* the trits plus one, unsigned: value + offset */
    int trit = KERL_TRITS;
    while (trit > 0) {
        int count = trit % GROUP_TRITS ? trit % GROUP_TRITS : GROUP_TRITS;
        uint32_t factor = 1, group = 0;
        for (int i = trit - 1; i >= trit - count; i--) {
            factor *= 3;
            group = group * 3 + (uint32_t)(trits[i] + 1);
        }
        limbs_multiply_add(number, factor, group);
        trit -= count;
    }
    residue_to_kerl_bytes(number, bytes);
}

/* A digest's balanced residue modulo 3^242 plus the offset (0 <= number < 3^242): the
 * digits of the trits plus one of the chunk Kerl squeezes. */
static void kerl_digest_residue(const unsigned char *bytes, uint32_t *number) {
    memset(number, 0, LIMBS * sizeof *number);
    for (int i = 0; i < KERL_BYTES; i++)
        number[i >> 2] |= (uint32_t)bytes[KERL_BYTES - 1 - i] << (8 * (i & 3));
    limbs_add(number, trit_offset);
    if (bytes[0] & 0x80) { /* negative: value = unsigned - 2^384; add 3^242 to stay >= 0 */
        limbs_add(number, trit_modulus);
        uint32_t two_384[LIMBS] = {0};
        two_384[12] = 1;
        limbs_subtract(number, two_384);
    }
    while (limbs_compare(number, trit_modulus) >= 0) limbs_subtract(number, trit_modulus);
}

/* The 243 trits of a residue from kerl_digest_residue (the last one 0). Changes `number`. */
static void residue_to_trits(uint32_t *number, int8_t *trits) {
    int top = LIMBS; /* limbs above `top` are zero: the number shrinks as it is divided */
    for (int first = 0; first < KERL_TRITS; first += GROUP_TRITS) {
        while (top > 0 && number[top - 1] == 0) top--;
        uint32_t group = limbs_divide_top(number, top, GROUP_MODULUS);
        for (int i = first; i < first + GROUP_TRITS && i < KERL_TRITS; i++) {
            trits[i] = (int8_t)(group % 3) - 1;
            group /= 3;
        }
    }
    trits[KERL_TRITS] = 0;
}

/* A digest as 243 trits: the balanced residue of its signed value modulo 3^242, then 0. */
static void kerl_bytes_to_trits(const unsigned char *bytes, int8_t *trits) {
    uint32_t number[LIMBS];
    kerl_digest_residue(bytes, number);
    residue_to_trits(number, trits);
}

/*
 * Kerl over `chunks` chunks of 243 trits, squeezing `squeezes` chunks into `out`.
 * `encoded` (chunks * 48 bytes) holds the previous row's encoded chunks and
 * `previous` its trits (NULL: none): a chunk equal to the one above it is not
 * converted again (candidate tags in a bundle search change one chunk of six).
 */
static void kerl_hash_row(const int8_t *trits, const int8_t *previous, Py_ssize_t chunks,
                          Py_ssize_t squeezes, unsigned char *encoded, int8_t *out) {
    keccak_t sponge;
    unsigned char bytes[KERL_BYTES];
    keccak_reset(&sponge);
    for (Py_ssize_t chunk = 0; chunk < chunks; chunk++) {
        const int8_t *source = trits + chunk * HASH_LENGTH;
        unsigned char *chunk_bytes = encoded + chunk * KERL_BYTES;
        if (previous == NULL || memcmp(source, previous + chunk * HASH_LENGTH, KERL_TRITS) != 0)
            trits_to_kerl_bytes(source, chunk_bytes);
        keccak_absorb(&sponge, chunk_bytes, KERL_BYTES);
    }
    for (Py_ssize_t step = 0; step < squeezes; step++) {
        keccak_digest(&sponge, bytes);
        kerl_bytes_to_trits(bytes, out + step * HASH_LENGTH);
        if (step + 1 < squeezes) { /* the next squeeze starts from the complemented digest */
            for (int i = 0; i < KERL_BYTES; i++) bytes[i] ^= 0xFF;
            keccak_reset(&sponge);
            keccak_absorb(&sponge, bytes, KERL_BYTES);
        }
    }
}

PyDoc_STRVAR(kerl_hash_doc,
             "kerl_hash(trits, rows, length, squeezes, out)\n--\n\n"
             "Kerl of each of `rows` rows of `length` int8 trits (a multiple of 243) with\n"
             "a fresh sponge, squeezing `squeezes` chunks of 243 trits per row into `out`\n"
             "(rows * squeezes * 243 int8), as kerl.kerl_hash_many does.");

static PyObject *kerl_hash(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *trits_object, *out_object;
    Py_ssize_t rows, length, squeezes;
    if (!PyArg_ParseTuple(args, "OnnnO:kerl_hash", &trits_object, &rows, &length, &squeezes,
                          &out_object))
        return NULL;
    if (rows < 1 || length < HASH_LENGTH || length % HASH_LENGTH || squeezes < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "rows, length (a multiple of 243) and squeezes must be positive");
        return NULL;
    }
    Py_buffer trits, out;
    if (get_exact(trits_object, &trits, rows * length, 0, "trits") < 0) return NULL;
    if (get_exact(out_object, &out, rows * squeezes * HASH_LENGTH, 1, "out") < 0) {
        PyBuffer_Release(&trits);
        return NULL;
    }
    const int8_t *source = trits.buf;
    int8_t *target = out.buf;
    Py_ssize_t chunks = length / HASH_LENGTH;
    unsigned char *encoded = malloc((size_t)chunks * KERL_BYTES);
    if (encoded == NULL) {
        PyBuffer_Release(&trits);
        PyBuffer_Release(&out);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t row = 0; row < rows; row++)
        kerl_hash_row(source + row * length, row ? source + (row - 1) * length : NULL, chunks,
                      squeezes, encoded, target + row * squeezes * HASH_LENGTH);
    Py_END_ALLOW_THREADS
    free(encoded);
    PyBuffer_Release(&trits);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(kerl_chains_doc,
             "kerl_chains(chunks, rows, counts, out)\n--\n\n"
             "Hash row i of `rows` chunks of 243 int8 trits counts[i] times (int64), each\n"
             "time with a fresh Kerl, into `out`, as kerl.kerl_hash_repeated does.");

static PyObject *kerl_chains(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *chunks_object, *counts_object, *out_object;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OnOO:kerl_chains", &chunks_object, &rows, &counts_object,
                          &out_object))
        return NULL;
    if (rows < 1) {
        PyErr_SetString(PyExc_ValueError, "rows must be positive");
        return NULL;
    }
    Py_buffer chunks, counts, out;
    if (get_exact(chunks_object, &chunks, rows * HASH_LENGTH, 0, "chunks") < 0) return NULL;
    if (get_exact(counts_object, &counts, rows * 8, 0, "counts") < 0) {
        PyBuffer_Release(&chunks);
        return NULL;
    }
    if (get_exact(out_object, &out, rows * HASH_LENGTH, 1, "out") < 0) {
        PyBuffer_Release(&chunks);
        PyBuffer_Release(&counts);
        return NULL;
    }
    const int8_t *source = chunks.buf;
    const int64_t *times = counts.buf;
    int8_t *target = out.buf;
    int negative = 0;
    for (Py_ssize_t row = 0; row < rows; row++) negative |= times[row] < 0;
    if (negative) {
        PyErr_SetString(PyExc_ValueError, "hash counts must be non-negative");
    } else {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t row = 0; row < rows; row++) {
            int8_t *chunk = target + row * HASH_LENGTH;
            memmove(chunk, source + row * HASH_LENGTH, HASH_LENGTH);
            if (times[row] == 0) continue;
            /* Between links the chain stays in Kerl's byte domain (a residue re-encoded),
             * exact as the trits in between are the residue's digits: no trit conversion. */
            unsigned char bytes[KERL_BYTES], digest[KERL_BYTES];
            uint32_t number[LIMBS];
            trits_to_kerl_bytes(chunk, bytes);
            for (int64_t step = 0; step < times[row]; step++) {
                keccak_t sponge;
                keccak_reset(&sponge);
                keccak_absorb(&sponge, bytes, KERL_BYTES);
                keccak_digest(&sponge, digest);
                kerl_digest_residue(digest, number);
                if (step + 1 < times[row]) residue_to_kerl_bytes(number, bytes);
            }
            residue_to_trits(number, chunk);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&chunks);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&out);
    if (negative) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"transform", transform, METH_VARARGS, transform_doc},
    {"search_nonce", search_nonce, METH_VARARGS, search_nonce_doc},
    {"transform_single", transform_single, METH_VARARGS, transform_single_doc},
    {"absorb_single", absorb_single, METH_VARARGS, absorb_single_doc},
    {"pack_trits", pack_trits, METH_VARARGS, pack_trits_doc},
    {"use_instructions", use_instructions, METH_VARARGS, use_instructions_doc},
    {"unpack_trits", unpack_trits, METH_VARARGS, unpack_trits_doc},
    {"kerl_hash", kerl_hash, METH_VARARGS, kerl_hash_doc},
    {"kerl_chains", kerl_chains, METH_VARARGS, kerl_chains_doc},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module) {
    select_kernel();
    build_single_plan(&single_plans[0], 27);
    build_single_plan(&single_plans[1], 81);
    kerl_plan();
    if (PyModule_AddStringConstant(module, "KERNEL", active.name) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "p2p_energy_curl",
    .m_doc = "Compiled Curl-P kernel of the P2P Energy Grid protocol library (optional).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit_p2p_energy_curl(void) { return PyModuleDef_Init(&module_definition); }
