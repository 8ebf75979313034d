/* tailer._speedups: the tailer's per-line and per-record loops, in C.
 *
 * Why: in the running tailer, the interpreter's work per record -- a base64 object and a key
 * part per record for the request body, 500 dicts and 1,000 strings for the answer -- is most
 * of what the delivery threads spend, and a line object, a header and a list slot per line are
 * most of what the loop spends on an aggregate (docs/performance.md, rounds five and six). These
 * functions do the same work in one pass each, making one object per call.
 *
 * Each has a Python reference that stays the definition of what it does, and tests hold the C
 * byte for byte / answer for answer to those (tests/unit/test_put_records_body.py,
 * tests/unit/test_put_records_answer.py, tests/unit/test_kpl_records.py); when this module is
 * not built, the tailer runs the references themselves:
 *   put_records_body(head, records, tail) -> bytes | None
 *       KinesisSink._encode_plain_keys: head + the records as {"Data":"<base64>","PartitionKey":"<key>"},
 *       comma-separated, + tail -- for a list of (bytes, str, None) tuples whose keys need no JSON
 *       escaping (printable ASCII, no quote, no backslash); None for anything else.
 *   stored_answer(content, n) -> bool
 *       tailer.kinesis_answer.stored_count: True only for an answer of n entries, all stored, in one
 *       of the compact shapes that module names; False says nothing.
 *   kpl_records(data, start, room) -> (bytes, end, count)
 *       tailer.kpl.encode_lines: the lines of data[start:] (each ending in a newline) as KPL
 *       sub-records under partition key index 0, as many as fit in `room` bytes, in one bytes
 *       object; `end` is where the first line not taken starts, `count` how many were taken.
 *
 * Neither calls back into Python, and neither lets go of the GIL, so the objects they read cannot
 * change under them. Every read of `content` is bounds-checked against its length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* ---- put_records_body ------------------------------------------------------------------------ */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(char *out, const unsigned char *in, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; n - i >= 3; i += 3) {
        unsigned v = ((unsigned)in[i] << 16) | ((unsigned)in[i + 1] << 8) | in[i + 2];
        out[0] = B64[v >> 18];
        out[1] = B64[(v >> 12) & 63];
        out[2] = B64[(v >> 6) & 63];
        out[3] = B64[v & 63];
        out += 4;
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[0] = B64[v >> 18];
        out[1] = B64[(v >> 12) & 63];
        out[2] = '=';
        out[3] = '=';
        out += 4;
    } else if (n - i == 2) {
        unsigned v = ((unsigned)in[i] << 16) | ((unsigned)in[i + 1] << 8);
        out[0] = B64[v >> 18];
        out[1] = B64[(v >> 12) & 63];
        out[2] = B64[(v >> 6) & 63];
        out[3] = '=';
        out += 4;
    }
    return out;
}

#define OPEN "{\"Data\":\""
#define MIDDLE "\",\"PartitionKey\":\""
#define CLOSE "\"}"
#define LIT(s) (sizeof(s) - 1)

/* 1 if the key is an exact str of printable ASCII without '"' or '\\' (its length in *length), 0 if not,
 * -1 with an exception set if it could not be read (a legacy string that fails to become ready). */
static int plain_key(PyObject *key, Py_ssize_t *length)
{
    if (!PyUnicode_CheckExact(key))
        return 0;
    if (PyUnicode_READY(key) < 0)
        return -1;
    if (!PyUnicode_IS_ASCII(key))
        return 0;
    const unsigned char *chars = PyUnicode_1BYTE_DATA(key);
    Py_ssize_t n = PyUnicode_GET_LENGTH(key);
    for (Py_ssize_t j = 0; j < n; j++) {
        unsigned char c = chars[j];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    *length = n;
    return 1;
}

static PyObject *put_records_body(PyObject *module, PyObject *args)
{
    PyObject *head, *records, *tail;
    if (!PyArg_ParseTuple(args, "SOS", &head, &records, &tail))
        return NULL;
    if (!PyList_CheckExact(records))  /* a subclass may answer differently than its storage: Python's to read */
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(records);
    Py_ssize_t total = PyBytes_GET_SIZE(head);
    if (PyBytes_GET_SIZE(tail) > PY_SSIZE_T_MAX - total)
        Py_RETURN_NONE;
    total += PyBytes_GET_SIZE(tail);
    const Py_ssize_t per_record = LIT(OPEN) + LIT(MIDDLE) + LIT(CLOSE) + 1;
    for (Py_ssize_t i = 0; i < n; i++) {  /* check every record and add up the size first, never overflowing */
        PyObject *record = PyList_GET_ITEM(records, i);
        if (!PyTuple_CheckExact(record) || PyTuple_GET_SIZE(record) != 3 || PyTuple_GET_ITEM(record, 2) != Py_None)
            Py_RETURN_NONE;
        PyObject *data = PyTuple_GET_ITEM(record, 0);
        if (!PyBytes_CheckExact(data))
            Py_RETURN_NONE;
        Py_ssize_t key_length = 0;
        int plain = plain_key(PyTuple_GET_ITEM(record, 1), &key_length);
        if (plain < 0)
            return NULL;
        if (plain == 0)
            Py_RETURN_NONE;
        Py_ssize_t data_length = PyBytes_GET_SIZE(data);
        if (data_length / 3 >= PY_SSIZE_T_MAX / 4 - 1)  /* its base64 would not fit a Py_ssize_t */
            Py_RETURN_NONE;
        Py_ssize_t encoded = (data_length + 2) / 3 * 4;
        if (encoded > PY_SSIZE_T_MAX - total || key_length > PY_SSIZE_T_MAX - total - encoded
            || per_record > PY_SSIZE_T_MAX - total - encoded - key_length)
            Py_RETURN_NONE;
        total += encoded + key_length + per_record;
    }
    if (n > 0)
        total -= 1;  /* n - 1 commas */
    PyObject *body = PyBytes_FromStringAndSize(NULL, total);
    if (body == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(body);
    memcpy(out, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head));
    out += PyBytes_GET_SIZE(head);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        PyObject *data = PyTuple_GET_ITEM(record, 0), *key = PyTuple_GET_ITEM(record, 1);
        if (i)
            *out++ = ',';
        memcpy(out, OPEN, LIT(OPEN));
        out += LIT(OPEN);
        out = b64_encode(out, (const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
        memcpy(out, MIDDLE, LIT(MIDDLE));
        out += LIT(MIDDLE);
        memcpy(out, PyUnicode_1BYTE_DATA(key), PyUnicode_GET_LENGTH(key));
        out += PyUnicode_GET_LENGTH(key);
        memcpy(out, CLOSE, LIT(CLOSE));
        out += LIT(CLOSE);
    }
    memcpy(out, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail));
    out += PyBytes_GET_SIZE(tail);
    if (out != PyBytes_AS_STRING(body) + total) {  /* cannot happen: the sizes above are exact */
        Py_DECREF(body);
        PyErr_SetString(PyExc_SystemError, "put_records_body: size mismatch");
        return NULL;
    }
    return body;
}

/* ---- stored_answer --------------------------------------------------------------------------- */

#define MAX_SEQUENCE_DIGITS 128  /* tailer.kinesis_errors.MAX_SEQUENCE_DIGITS */

typedef struct {
    const char *p;
    const char *end;
} cursor;

static int take(cursor *c, const char *text, size_t length)
{
    if ((size_t)(c->end - c->p) < length || memcmp(c->p, text, length) != 0)
        return 0;
    c->p += length;
    return 1;
}

#define TAKE(c, s) take((c), (s), LIT(s))

/* A run of ASCII digits of min_digits..MAX_SEQUENCE_DIGITS (no digit may follow it). */
static int digits(cursor *c, Py_ssize_t min_digits)
{
    Py_ssize_t n = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        c->p++;
        if (++n > MAX_SEQUENCE_DIGITS)
            return 0;
    }
    return n >= min_digits;
}

static PyObject *stored_answer(PyObject *module, PyObject *args)
{
    Py_buffer content;
    PyObject *count;
    if (!PyArg_ParseTuple(args, "y*O!", &content, &PyLong_Type, &count))
        return NULL;
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(count, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        PyBuffer_Release(&content);
        return NULL;
    }
    cursor c = {(const char *)content.buf, (const char *)content.buf + content.len};
    int ok = !overflow && n >= 1;  /* a count past a long long is no answer's either */
    /* the head: {"FailedRecordCount":0,"Records":[ -- optionally after an EncryptionType */
    if (ok)
        ok = TAKE(&c, "{\"FailedRecordCount\":") || TAKE(&c, "{\"EncryptionType\":\"KMS\",\"FailedRecordCount\":")
             || TAKE(&c, "{\"EncryptionType\":\"NONE\",\"FailedRecordCount\":");
    ok = ok && TAKE(&c, "0,\"Records\":[");
    /* the entries, all in one of the two orders; the ShardId's digits: 0..128 as the Python proof has it */
    int sequence_first = ok && TAKE(&c, "{\"SequenceNumber\":\"");
    ok = ok && (sequence_first || TAKE(&c, "{\"ShardId\":\"shardId-"));
    for (long long i = 0; ok && i < n; i++) {
        if (i)
            ok = sequence_first ? TAKE(&c, "\"},{\"SequenceNumber\":\"") : TAKE(&c, "\"},{\"ShardId\":\"shardId-");
        if (sequence_first)
            ok = ok && digits(&c, 1) && TAKE(&c, "\",\"ShardId\":\"shardId-") && digits(&c, 0);
        else
            ok = ok && digits(&c, 0) && TAKE(&c, "\",\"SequenceNumber\":\"") && digits(&c, 1);
    }
    /* the tail: the last entry's close, the list's, and the object's -- optionally after an EncryptionType */
    ok = ok && TAKE(&c, "\"}]");
    ok = ok && (TAKE(&c, "}") || TAKE(&c, ",\"EncryptionType\":\"KMS\"}") || TAKE(&c, ",\"EncryptionType\":\"NONE\"}"));
    ok = ok && c.p == c.end;
    PyBuffer_Release(&content);
    return PyBool_FromLong(ok);
}

/* ---- kpl_records ----------------------------------------------------------------------------- */

static Py_ssize_t varint_length(Py_ssize_t value)
{
    Py_ssize_t n = 1;
    for (size_t v = (size_t)value; v > 0x7f; v >>= 7)
        n++;
    return n;
}

static char *put_varint(char *out, Py_ssize_t value)
{
    size_t v = (size_t)value;
    for (; v > 0x7f; v >>= 7)
        *out++ = (char)((v & 0x7f) | 0x80);
    *out++ = (char)v;
    return out;
}

/* The bytes of one sub-record for a line of n bytes: 0x1a varint(inner) | 0x08 0x00 0x1a varint(n) line. */
static Py_ssize_t record_size(Py_ssize_t n, Py_ssize_t *inner)
{
    *inner = 3 + varint_length(n) + n;
    return 1 + varint_length(*inner) + *inner;
}

/* start and room as Python's comparisons see them: any int, clamped to a Py_ssize_t (past the data
 * either way, a clamped value means what the exact one does); anything else a TypeError. */
static int clamped_index(PyObject *value, Py_ssize_t *out)
{
    *out = PyNumber_AsSsize_t(value, NULL);
    return !(*out == -1 && PyErr_Occurred());
}

static PyObject *kpl_records(PyObject *module, PyObject *args)
{
    PyObject *data, *start_arg, *room_arg;
    Py_ssize_t start, room;
    /* bytes only: immutable, so the two passes below read the same lines (a buffer could change between them) */
    if (!PyArg_ParseTuple(args, "SOO", &data, &start_arg, &room_arg))
        return NULL;
    if (!clamped_index(start_arg, &start) || !clamped_index(room_arg, &room))
        return NULL;
    const char *base = PyBytes_AS_STRING(data);
    const Py_ssize_t length = PyBytes_GET_SIZE(data);
    if (start < 0 || start > length) {
        PyErr_SetString(PyExc_ValueError, "kpl_records: start is outside the data");
        return NULL;
    }
    Py_ssize_t pos = start, total = 0, count = 0, inner;
    /* First pass: how many whole lines fit. total <= room always holds, so room - total never overflows. */
    while (pos < length) {
        const char *newline = memchr(base + pos, '\n', (size_t)(length - pos));
        if (newline == NULL)
            break;  /* a line without its newline is not a line yet */
        Py_ssize_t n = newline - (base + pos) + 1;
        if (n > PY_SSIZE_T_MAX / 2)  /* its record's size would not fit a Py_ssize_t: never in memory */
            break;
        Py_ssize_t size = record_size(n, &inner);
        if (size > room - total)
            break;
        total += size;
        pos += n;
        count++;
    }
    PyObject *piece = PyBytes_FromStringAndSize(NULL, total);
    if (piece == NULL)
        return NULL;
    /* Second pass: write them. Every write is checked against the room the first pass measured. */
    char *out = PyBytes_AS_STRING(piece);
    const char *limit = out + total;
    for (Py_ssize_t p = start, i = 0; i < count; i++) {
        const char *newline = memchr(base + p, '\n', (size_t)(length - p));
        Py_ssize_t n = newline == NULL ? 0 : newline - (base + p) + 1;
        Py_ssize_t size = record_size(n, &inner);
        if (newline == NULL || size > limit - out) {  /* cannot happen: bytes do not change */
            Py_DECREF(piece);
            PyErr_SetString(PyExc_SystemError, "kpl_records: the data changed between the passes");
            return NULL;
        }
        *out++ = 0x1a;
        out = put_varint(out, inner);
        *out++ = 0x08;
        *out++ = 0x00;
        *out++ = 0x1a;
        out = put_varint(out, n);
        memcpy(out, base + p, (size_t)n);
        out += n;
        p += n;
    }
    if (out != limit) {  /* cannot happen: the sizes above are exact */
        Py_DECREF(piece);
        PyErr_SetString(PyExc_SystemError, "kpl_records: size mismatch");
        return NULL;
    }
    return Py_BuildValue("(Nnn)", piece, pos, count);
}

static PyMethodDef methods[] = {
    {"put_records_body", put_records_body, METH_VARARGS,
     "put_records_body(head, records, tail) -> bytes | None: KinesisSink._encode_plain_keys in one pass."},
    {"stored_answer", stored_answer, METH_VARARGS,
     "stored_answer(content, n) -> bool: tailer.kinesis_answer.stored_count in one pass."},
    {"kpl_records", kpl_records, METH_VARARGS,
     "kpl_records(data, start, room) -> (bytes, end, count): tailer.kpl.encode_lines in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tailer._speedups",
    "The tailer's per-line and per-record loops, in C (see tailer/_speedups.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
