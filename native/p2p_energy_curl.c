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
 * of state are 46 KiB, more than a level-1 data cache) does two rounds.
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
#define BLOCK_WORDS 4
#define BLOCK_LANES (64 * BLOCK_WORDS)
#define NONCE_TRITS 81
#define NONCE_ROW (HASH_LENGTH - NONCE_TRITS)
#define COUNTER_TRITS 27
#define ALL_ONES UINT64_MAX

typedef uint64_t block_t __attribute__((vector_size(32)));

typedef struct {
    block_t low;
    block_t high;
} cell_t;

/* S-box in the (low, high) encoding: five gates (see curl.py). */
#define SBOX(out_low, out_high, a_low, a_high, b_low, b_high) \
    do {                                                      \
        block_t carry_ = (a_low) & (b_low);                   \
        (out_high) = ((a_high) & (b_high)) ^ carry_;          \
        (out_low) = (a_low) ^ (a_high) ^ carry_;              \
    } while (0)

/*
 * One round, natural order in and out:
 * out[2k] = S(in[-k], in[364 - k]), out[2k + 1] = S(in[364 - k], in[728 - k]).
 */
#define DEFINE_ROUND_PASS(suffix, attributes)                                         \
    attributes static void round_pass_##suffix(const cell_t *in, cell_t *out) {        \
        for (int k = 0; k < HALF; k++) {                                               \
            const cell_t *a = &in[k ? STATE_LENGTH - k : 0];                            \
            const cell_t *b = &in[HALF - k];                                            \
            const cell_t *c = &in[2 * HALF - k];                                        \
            SBOX(out[2 * k].low, out[2 * k].high, a->low, a->high, b->low, b->high);    \
            SBOX(out[2 * k + 1].low, out[2 * k + 1].high, b->low, b->high, c->low,      \
                 c->high);                                                              \
        }                                                                              \
        SBOX(out[2 * HALF].low, out[2 * HALF].high, in[HALF + 1].low, in[HALF + 1].high, \
             in[0].low, in[0].high);                                                    \
    }

/* Cell x of the round after `in`, from the two reads the round formula names. */
#define DEFINE_FIRST_ROUND_CELL(suffix, attributes)                                     \
    attributes static inline void first_round_cell_##suffix(const cell_t *in, int x,   \
                                                             block_t *low,             \
                                                             block_t *high) {          \
        int m = x >> 1;                                                                 \
        const cell_t *a, *b;                                                            \
        if (x & 1) {                                                                    \
            a = &in[HALF - m];                                                          \
            b = &in[2 * HALF - m];                                                      \
        } else {                                                                        \
            a = &in[m ? STATE_LENGTH - m : 0];                                          \
            b = &in[HALF - m];                                                          \
        }                                                                               \
        SBOX(*low, *high, a->low, a->high, b->low, b->high);                            \
    }

/* Two rounds in one pass: the first round's cells are made as the second needs them. */
#define DEFINE_DOUBLE_ROUND_PASS(suffix, attributes)                                      \
    attributes static void double_round_pass_##suffix(const cell_t *in, cell_t *out) {   \
        block_t prev_low, prev_high, mid_low, mid_high, next_low, next_high;              \
        first_round_cell_##suffix(in, 0, &prev_low, &prev_high);                          \
        for (int k = 0; k < HALF; k++) {                                                  \
            first_round_cell_##suffix(in, HALF - k, &mid_low, &mid_high);                 \
            first_round_cell_##suffix(in, 2 * HALF - k, &next_low, &next_high);           \
            SBOX(out[2 * k].low, out[2 * k].high, prev_low, prev_high, mid_low, mid_high); \
            SBOX(out[2 * k + 1].low, out[2 * k + 1].high, mid_low, mid_high, next_low,    \
                 next_high);                                                              \
            prev_low = next_low;                                                          \
            prev_high = next_high;                                                        \
        }                                                                                 \
        first_round_cell_##suffix(in, 0, &mid_low, &mid_high);                            \
        SBOX(out[2 * HALF].low, out[2 * HALF].high, prev_low, prev_high, mid_low,         \
             mid_high);                                                                   \
    }

/* `rounds` rounds of the state in `state`; returns the buffer holding the result. */
#define DEFINE_ROUNDS(suffix, attributes)                                                 \
    attributes static cell_t *rounds_##suffix(cell_t *state, cell_t *scratch, int rounds) { \
        cell_t *in = state, *out = scratch, *swap;                                        \
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

#define DEFINE_KERNEL(suffix, attributes)          \
    DEFINE_ROUND_PASS(suffix, attributes)          \
    DEFINE_FIRST_ROUND_CELL(suffix, attributes)    \
    DEFINE_DOUBLE_ROUND_PASS(suffix, attributes)   \
    DEFINE_ROUNDS(suffix, attributes)

/* The portable kernel: whatever the compiler's target has (SSE2 pairs, NEON pairs). */
DEFINE_KERNEL(generic, )

typedef cell_t *(*rounds_fn)(cell_t *, cell_t *, int);
static rounds_fn run_rounds = rounds_generic;
static const char *kernel_name = "generic";

#if defined(__x86_64__) || defined(__i386__)
/* The same code compiled for AVX2 (one instruction per 256-lane operation), picked at import. */
DEFINE_KERNEL(avx2, __attribute__((target("avx2"))))
#endif

static void select_kernel(void) {
    run_rounds = rounds_generic;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        run_rounds = rounds_avx2;
        kernel_name = "avx2";
        return;
    }
    kernel_name = "sse2";
#elif defined(__aarch64__)
    kernel_name = "neon";
#else
    kernel_name = "generic";
#endif
}

PyDoc_STRVAR(use_instructions_doc,
             "use_instructions(name)\n--\n\n"
             "'best' (the default: AVX2 where the CPU has it) or 'portable' (the build's\n"
             "baseline, as on CPUs without AVX2 and on ARM), so tests can run both on one\n"
             "machine. Returns the name of the instructions now in use.");

static PyObject *use_instructions(PyObject *module, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:use_instructions", &name)) return NULL;
    if (strcmp(name, "best") == 0) {
        select_kernel();
    } else if (strcmp(name, "portable") == 0) {
        run_rounds = rounds_generic;
        kernel_name = "portable";
    } else {
        PyErr_Format(PyExc_ValueError, "instructions must be 'best' or 'portable', got %s", name);
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "KERNEL", kernel_name) < 0) return NULL;
    return PyUnicode_FromString(kernel_name);
}

/* Two cell buffers for one block, aligned for the vector loads. */
typedef struct {
    cell_t *state;
    cell_t *scratch;
    void *memory;
} workspace_t;

static int workspace_open(workspace_t *space) {
    size_t size = 2 * STATE_LENGTH * sizeof(cell_t) + 64;
    space->memory = malloc(size);
    if (space->memory == NULL) return -1;
    uintptr_t aligned = ((uintptr_t)space->memory + 63) & ~(uintptr_t)63;
    space->state = (cell_t *)aligned;
    space->scratch = space->state + STATE_LENGTH;
    return 0;
}

static void workspace_close(workspace_t *space) { free(space->memory); }

/* Copy words [first, first + count) of every row of the planes into cells (rest zero). */
static void load_block(cell_t *cells, const uint64_t *low, const uint64_t *high,
                       Py_ssize_t words, Py_ssize_t first, Py_ssize_t count) {
    memset(cells, 0, STATE_LENGTH * sizeof(cell_t));
    for (int row = 0; row < STATE_LENGTH; row++) {
        memcpy(&cells[row].low, low + row * words + first, (size_t)count * 8);
        memcpy(&cells[row].high, high + row * words + first, (size_t)count * 8);
    }
}

static void store_block(const cell_t *cells, uint64_t *low, uint64_t *high,
                        Py_ssize_t words, Py_ssize_t first, Py_ssize_t count) {
    for (int row = 0; row < STATE_LENGTH; row++) {
        memcpy(low + row * words + first, &cells[row].low, (size_t)count * 8);
        memcpy(high + row * words + first, &cells[row].high, (size_t)count * 8);
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
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t first = 0; first < words; first += BLOCK_WORDS) {
            Py_ssize_t count = words - first < BLOCK_WORDS ? words - first : BLOCK_WORDS;
            load_block(space.state, low_words, high_words, words, first, count);
            cell_t *done = run_rounds(space.state, space.scratch, rounds);
            store_block(done, low_words, high_words, words, first, count);
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
    const unsigned char *bytes = planes.buf;
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
    single_transform(low, high, &single_plans[rounds == 81], rounds);
    unsigned char *out = planes.buf;
    for (int word = 0; word < SINGLE_WORDS; word++) {
        for (int byte = 0; byte < 8; byte++) {
            out[8 * word + byte] = (unsigned char)(low[word] >> (8 * byte));
            out[8 * SINGLE_WORDS + 8 * word + byte] = (unsigned char)(high[word] >> (8 * byte));
        }
    }
    PyBuffer_Release(&planes);
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
    Py_ssize_t blocks = (words + BLOCK_WORDS - 1) / BLOCK_WORDS;
    void *base_memory = malloc((size_t)blocks * STATE_LENGTH * sizeof(cell_t) + 64);
    workspace_t space;
    if (base_memory == NULL || workspace_open(&space) < 0) {
        free(base_memory);
        PyBuffer_Release(&low);
        PyBuffer_Release(&high);
        return PyErr_NoMemory();
    }
    cell_t *bases = (cell_t *)(((uintptr_t)base_memory + 63) & ~(uintptr_t)63);
    Py_ssize_t found_counter = -1, found_lane = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t block = 0; block < blocks; block++) {
        Py_ssize_t word = block * BLOCK_WORDS;
        Py_ssize_t count = words - word < BLOCK_WORDS ? words - word : BLOCK_WORDS;
        load_block(bases + block * STATE_LENGTH, low.buf, high.buf, words, word, count);
    }
    for (Py_ssize_t counter = first; counter < stop && found_counter < 0; counter++) {
        block_t counter_low[COUNTER_TRITS], counter_high[COUNTER_TRITS];
        Py_ssize_t value = counter;
        for (int digit = 0; digit < COUNTER_TRITS; digit++, value /= 3) {
            uint64_t digit_low, digit_high;
            trit_planes((int)(value % 3) - 1, &digit_low, &digit_high);
            for (int word = 0; word < BLOCK_WORDS; word++) {
                counter_low[digit][word] = digit_low;
                counter_high[digit][word] = digit_high;
            }
        }
        for (Py_ssize_t block = 0; block < blocks; block++) {
            memcpy(space.state, bases + block * STATE_LENGTH, STATE_LENGTH * sizeof(cell_t));
            for (int digit = 0; digit < COUNTER_TRITS; digit++) {
                space.state[counter_row + digit].low = counter_low[digit];
                space.state[counter_row + digit].high = counter_high[digit];
            }
            cell_t *done = run_rounds(space.state, space.scratch, 81);
            /* A zero trit is (1, 1): AND both planes over the hash's last `weight` trits. */
            block_t zero = done[HASH_LENGTH - 1].low & done[HASH_LENGTH - 1].high;
            for (int row = HASH_LENGTH - weight; row < HASH_LENGTH - 1; row++)
                zero &= done[row].low & done[row].high;
            for (int word = 0; word < BLOCK_WORDS; word++) {
                Py_ssize_t lane = (block * BLOCK_WORDS + word) * 64;
                if (lane >= lanes) break;
                if (zero[word]) {
                    found_counter = counter;
                    found_lane = lane + __builtin_ctzll(zero[word]);
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

static PyMethodDef methods[] = {
    {"transform", transform, METH_VARARGS, transform_doc},
    {"search_nonce", search_nonce, METH_VARARGS, search_nonce_doc},
    {"transform_single", transform_single, METH_VARARGS, transform_single_doc},
    {"pack_trits", pack_trits, METH_VARARGS, pack_trits_doc},
    {"use_instructions", use_instructions, METH_VARARGS, use_instructions_doc},
    {"unpack_trits", unpack_trits, METH_VARARGS, unpack_trits_doc},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module) {
    select_kernel();
    build_single_plan(&single_plans[0], 27);
    build_single_plan(&single_plans[1], 81);
    if (PyModule_AddStringConstant(module, "KERNEL", kernel_name) < 0) return -1;
    if (PyModule_AddIntConstant(module, "BLOCK_LANES", BLOCK_LANES) < 0) return -1;
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
