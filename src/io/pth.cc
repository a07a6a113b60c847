// PyTorch zip checkpoints: the zip directory (io/zip.h), a restricted unpickler for data.pkl and
// tensors borrowed from (or gathered out of) the mapped storage entries.
//
// The unpickler is a flat stack machine over an arena of values linked by raw pointers: no
// recursion, no reference cycles, nothing is ever called. Only the globals a state dict names are
// accepted, and "calling" one (REDUCE) builds a tensor record or an empty dict, nothing more.
// Memory and time stay linear in the pickle's size: strings are views into the pickle, a memo
// entry or a GET shares the value instead of copying it, and the names, keys, values and tensors
// a pickle may create are bounded (the limits below, each named in its error).
#include "io/pth.h"

#include <cstring>
#include <deque>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "io/model_folder.h"
#include "io/zip.h"

namespace ib {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 50;
constexpr size_t kMaxStack = size_t{1} << 20;    // stack entries, and open MARKs
constexpr size_t kMaxValues = size_t{1} << 20;   // and memo entries; a real state dict needs ~30 per tensor
constexpr size_t kMaxTensors = size_t{1} << 17;  // the release's largest .pth (CLIP) has ~900
constexpr size_t kMaxDims = 16;
constexpr size_t kMaxStorageKey = 64;   // torch.save writes decimal indices: "0", "1", ...
constexpr size_t kMaxName = 1024;       // tensor names; the release's longest is ~60 bytes
constexpr size_t kMaxGlobalName = 64;   // longer than every allowed "module.name"

// A string for an error message: long ones are cut, so a message never copies a hostile string.
std::string shown(std::string_view s) {
  if (s.size() <= 80) return std::string(s);
  return fmt::format("{}... ({} bytes)", s.substr(0, 80), s.size());
}

const char* opcode_name(unsigned char op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown opcode";
  }
}

// The globals a state dict may name. Storage classes carry their dtype.
enum class Callable { None, OrderedDict, RebuildTensorV2, RebuildParameter, StorageClass };

struct AllowedGlobal {
  const char* name;
  Callable callable;
  DType dtype;
};

constexpr AllowedGlobal kAllowedGlobals[] = {
    {"collections.OrderedDict", Callable::OrderedDict, DType::F32},
    {"torch._utils._rebuild_tensor_v2", Callable::RebuildTensorV2, DType::F32},
    {"torch._utils._rebuild_parameter", Callable::RebuildParameter, DType::F32},
    {"torch.FloatStorage", Callable::StorageClass, DType::F32},
    {"torch.HalfStorage", Callable::StorageClass, DType::F16},
    {"torch.BFloat16Storage", Callable::StorageClass, DType::BF16},
    {"torch.DoubleStorage", Callable::StorageClass, DType::F64},
    {"torch.LongStorage", Callable::StorageClass, DType::I64},
    {"torch.IntStorage", Callable::StorageClass, DType::I32},
    {"torch.ShortStorage", Callable::StorageClass, DType::I16},
    {"torch.CharStorage", Callable::StorageClass, DType::I8},
    {"torch.ByteStorage", Callable::StorageClass, DType::U8},
    {"torch.BoolStorage", Callable::StorageClass, DType::Bool},
};

enum class Kind { None, Bool, Int, Str, Tuple, Dict, Global, Storage, Tensor };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

// Kept small (64 bytes): a hostile pickle may create kMaxValues of them.
struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;                          // Bool, Int; Storage: its numel; Tensor: index in Unpickler::tensors_
  std::string_view s;                     // Str: bytes of the pickle; Global: its name; Storage: its key
  const AllowedGlobal* global = nullptr;  // Global; Storage: its class (the dtype)
  std::vector<Value*> items;              // Tuple: the items; Dict: key, value, key, value, ... in order
};

class Unpickler {
 public:
  Unpickler(const unsigned char* data, size_t size, const std::string& label)
      : data_(data), size_(size), label_(label) {}

  std::map<std::string, PthTensorRecord> run() {
    Value* root = execute();
    IB_CHECK(root->kind == Kind::Dict, "'{}': the pickle's root is a {}, not a state dict", label_,
             kind_name(root->kind));
    std::map<std::string, PthTensorRecord> out;
    for (size_t n = 0; n < root->items.size(); n += 2) {
      const Value* k = root->items[n];
      const Value* v = root->items[n + 1];
      IB_CHECK(k->kind == Kind::Str, "'{}': state dict key is a {}, not a string", label_, kind_name(k->kind));
      IB_CHECK(k->s.size() <= kMaxName,
               "'{}': state dict key '{}' is longer than the limit of {} bytes for a tensor name", label_,
               shown(k->s), kMaxName);
      IB_CHECK(v->kind == Kind::Tensor, "'{}': state dict entry '{}' is a {}, not a tensor", label_, shown(k->s),
               kind_name(v->kind));
      const PthTensorRecord& r = tensors_[static_cast<size_t>(v->i)];
      check_extent(k->s, r);
      IB_CHECK(out.emplace(std::string(k->s), r).second, "'{}': state dict key '{}' appears twice", label_,
               shown(k->s));
    }
    return out;
  }

 private:
  [[noreturn]] void refuse(unsigned char op) const {
    fail("'{}': pickle opcode 0x{:02x} ({}) at offset {} is not allowed in a state dict", label_,
         static_cast<unsigned>(op), opcode_name(op), op_pos_);
  }

  const unsigned char* take(size_t n) {
    IB_CHECK(n <= size_ - pos_, "'{}': the pickle is truncated (opcode {} at offset {} needs {} more bytes, {} left)",
             label_, opcode_name(op_), op_pos_, n, size_ - pos_);
    const unsigned char* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint64_t take_le(size_t n) {
    const unsigned char* p = take(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | p[k];
    return v;
  }
  std::string_view take_line() {
    const size_t limit = std::min<size_t>(size_ - pos_, 256);
    const void* nl = std::memchr(data_ + pos_, '\n', limit);
    IB_CHECK(nl != nullptr, "'{}': unterminated or overlong GLOBAL name at offset {}", label_, op_pos_);
    const size_t n = static_cast<size_t>(static_cast<const unsigned char*>(nl) - (data_ + pos_));
    const std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n + 1;
    return s;
  }

  Value* make(Kind k) {
    IB_CHECK(arena_.size() < kMaxValues, "'{}': the pickle builds more than {} objects; not a state dict", label_,
             kMaxValues);
    arena_.emplace_back();
    arena_.back().kind = k;
    return &arena_.back();
  }
  void push(Value* v) {
    IB_CHECK(stack_.size() < kMaxStack, "'{}': pickle stack overflow at offset {}", label_, op_pos_);
    stack_.push_back(v);
  }
  Value* pop() {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    IB_CHECK(stack_.size() > floor, "'{}': pickle stack underflow at opcode {} (offset {})", label_,
             opcode_name(op_), op_pos_);
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    IB_CHECK(stack_.size() > floor, "'{}': pickle stack underflow at opcode {} (offset {})", label_,
             opcode_name(op_), op_pos_);
    return stack_.back();
  }
  // The values above the last MARK, which is removed.
  std::vector<Value*> pop_mark() {
    IB_CHECK(!marks_.empty(), "'{}': opcode {} at offset {} without a MARK", label_, opcode_name(op_), op_pos_);
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return v;
  }
  Value* make_str(size_t n) {
    Value* v = make(Kind::Str);
    const unsigned char* p = take(n);
    v->s = std::string_view(reinterpret_cast<const char*>(p), n);
    return v;
  }
  Value* make_int(int64_t i) {
    Value* v = make(Kind::Int);
    v->i = i;
    return v;
  }
  // None, booleans, the empty tuple and ints 0..255 are immutable here, so one value of each is
  // shared (as Python shares them): a run of such one-byte opcodes then costs only stack slots.
  Value* shared(Kind k, int64_t i = 0) {
    Value*& v = k == Kind::None    ? none_
                : k == Kind::Bool  ? bools_[i != 0]
                : k == Kind::Tuple ? empty_tuple_
                                   : small_ints_[static_cast<size_t>(i)];
    if (v == nullptr) {
      v = make(k);
      v->i = i;
    }
    return v;
  }
  Value* make_tuple(std::vector<Value*> items) {
    Value* v = make(Kind::Tuple);
    v->items = std::move(items);
    return v;
  }
  void memo_put(uint64_t idx) {
    IB_CHECK(memo_.size() < kMaxValues || memo_.count(idx), "'{}': the pickle memo grows past {} entries", label_,
             kMaxValues);
    memo_[idx] = top();
  }
  void memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    IB_CHECK(it != memo_.end(), "'{}': pickle memo entry {} read at offset {} was never stored", label_, idx,
             op_pos_);
    push(it->second);
  }
  void set_item(Value* dict, Value* key, Value* val) {
    IB_CHECK(dict->kind == Kind::Dict, "'{}': SETITEM(S) at offset {} on a {}, not a dict", label_, op_pos_,
             kind_name(dict->kind));
    dict->items.push_back(key);
    dict->items.push_back(val);
  }
  Value* global(std::string_view module, std::string_view name) {
    if (module.size() + name.size() < kMaxGlobalName) {
      const std::string full = fmt::format("{}.{}", module, name);
      for (const auto& g : kAllowedGlobals) {
        if (full == g.name) {
          Value* v = make(Kind::Global);
          v->s = g.name;
          v->global = &g;
          return v;
        }
      }
    }
    fail("'{}': refusing global '{}.{}' at offset {}: a state dict may only name torch tensor/storage rebuilding "
         "and collections.OrderedDict", label_, shown(module), shown(name), op_pos_);
  }

  // The last element's index must lie inside the storage; sizes must not overflow.
  void check_extent(std::string_view name, const PthTensorRecord& r) const {
    int64_t numel = 1, last = 0;
    bool ok = r.storage_offset >= 0 && r.storage_offset <= kMaxElements;
    for (size_t d = 0; ok && d < r.shape.size(); ++d) {
      int64_t span = 0;
      ok = !__builtin_mul_overflow(r.shape[d], numel, &numel) && numel <= kMaxElements;
      if (ok && r.shape[d] > 0)
        ok = !__builtin_mul_overflow(r.shape[d] - 1, r.stride[d], &span) &&
             !__builtin_add_overflow(last, span, &last) && last <= kMaxElements;
    }
    IB_CHECK(ok, "'{}': tensor '{}' (size {}, stride {}, storage offset {}) is impossibly large", label_, name,
             shape_str(r.shape), shape_str(r.stride), r.storage_offset);
    IB_CHECK(numel == 0 || r.storage_offset + last < r.storage_numel,
             "'{}': tensor '{}' (size {}, stride {}, storage offset {}) runs past its storage '{}' of {} elements",
             label_, name, shape_str(r.shape), shape_str(r.stride), r.storage_offset, r.storage_key, r.storage_numel);
  }

  int64_t as_int(const Value* v, const char* what) const {
    IB_CHECK(v->kind == Kind::Int, "'{}': {} is a {}, not an int (offset {})", label_, what, kind_name(v->kind),
             op_pos_);
    return v->i;
  }
  std::vector<int64_t> as_int_tuple(const Value* v, const char* what) const {
    IB_CHECK(v->kind == Kind::Tuple && v->items.size() <= kMaxDims,
             "'{}': tensor {} is a {} (offset {}), not a tuple of at most {} ints", label_, what, kind_name(v->kind),
             op_pos_, kMaxDims);
    std::vector<int64_t> out;
    for (const Value* x : v->items) {
      const int64_t i = as_int(x, what);
      IB_CHECK(i >= 0 && i <= kMaxElements, "'{}': tensor {} holds {} (offset {})", label_, what, i, op_pos_);
      out.push_back(i);
    }
    return out;
  }

  // persistent id ('storage', storage class, key, location, numel) -> storage reference.
  Value* persistent_load(Value* pid) {
    IB_CHECK(pid->kind == Kind::Tuple && pid->items.size() == 5 && pid->items[0]->kind == Kind::Str &&
                 pid->items[0]->s == "storage",
             "'{}': persistent id at offset {} is not ('storage', class, key, location, numel)", label_, op_pos_);
    const Value* cls = pid->items[1];
    IB_CHECK(cls->kind == Kind::Global && cls->global->callable == Callable::StorageClass,
             "'{}': persistent id at offset {} names a {} instead of a torch storage class", label_, op_pos_,
             cls->kind == Kind::Global ? cls->s : kind_name(cls->kind));
    const std::string_view key = pid->items[2]->s;
    IB_CHECK(pid->items[2]->kind == Kind::Str && !key.empty(), "'{}': persistent id at offset {} has no storage key",
             label_, op_pos_);
    IB_CHECK(key.size() <= kMaxStorageKey,
             "'{}': storage key '{}' at offset {} is longer than the limit of {} bytes for a storage key", label_,
             shown(key), op_pos_, kMaxStorageKey);
    const int64_t numel = as_int(pid->items[4], "storage numel");
    IB_CHECK(numel >= 0 && numel <= kMaxElements, "'{}': storage '{}' declares {} elements", label_, key, numel);
    Value* v = make(Kind::Storage);
    v->s = key;
    v->i = numel;
    v->global = cls->global;
    auto [it, inserted] = storages_.emplace(key, std::make_pair(cls->global->dtype, numel));
    IB_CHECK(inserted || (it->second.first == cls->global->dtype && it->second.second == numel),
             "'{}': storage '{}' is declared twice with different types or sizes", label_, key);
    return v;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  Value* rebuild_tensor(const Value* args) {
    IB_CHECK(args->items.size() == 6 || args->items.size() == 7,
             "'{}': _rebuild_tensor_v2 at offset {} takes 6 or 7 arguments, got {}", label_, op_pos_,
             args->items.size());
    const Value* st = args->items[0];
    IB_CHECK(st->kind == Kind::Storage, "'{}': _rebuild_tensor_v2 at offset {} got a {} instead of a storage", label_,
             op_pos_, kind_name(st->kind));
    IB_CHECK(tensors_.size() < kMaxTensors, "'{}': the pickle builds more than {} tensors, the limit for a state dict",
             label_, kMaxTensors);
    Value* t = make(Kind::Tensor);
    t->i = static_cast<int64_t>(tensors_.size());
    PthTensorRecord& r = tensors_.emplace_back();
    r.storage_key = std::string(st->s);
    r.dtype = st->global->dtype;
    r.storage_numel = st->i;
    r.storage_offset = as_int(args->items[1], "storage_offset");
    r.shape = as_int_tuple(args->items[2], "size");
    r.stride = as_int_tuple(args->items[3], "stride");
    IB_CHECK(r.stride.size() == r.shape.size(), "'{}': tensor at offset {} has size {} but stride {}", label_, op_pos_,
             shape_str(r.shape), shape_str(r.stride));
    const Kind hooks = args->items[5]->kind;
    IB_CHECK((hooks == Kind::Dict && args->items[5]->items.empty()) || hooks == Kind::None,
             "'{}': tensor at offset {} has backward hooks", label_, op_pos_);
    return t;
  }

  Value* reduce(const Value* fn, const Value* args) {
    IB_CHECK(fn->kind == Kind::Global, "'{}': REDUCE at offset {} calls a {}", label_, op_pos_, kind_name(fn->kind));
    IB_CHECK(args->kind == Kind::Tuple, "'{}': REDUCE at offset {} with {} arguments instead of a tuple", label_,
             op_pos_, kind_name(args->kind));
    switch (fn->global->callable) {
      case Callable::OrderedDict:
        IB_CHECK(args->items.empty(), "'{}': OrderedDict at offset {} with arguments", label_, op_pos_);
        return make(Kind::Dict);
      case Callable::RebuildTensorV2:
        return rebuild_tensor(args);
      case Callable::RebuildParameter:  // (data, requires_grad, backward_hooks): the tensor itself
        IB_CHECK(args->items.size() == 3 && args->items[0]->kind == Kind::Tensor,
                 "'{}': _rebuild_parameter at offset {} without a tensor", label_, op_pos_);
        return args->items[0];
      default:
        fail("'{}': refusing to call '{}' at offset {}", label_, fn->s, op_pos_);
    }
  }

  Value* execute() {
    while (true) {
      op_pos_ = pos_;
      IB_CHECK(pos_ < size_, "'{}': the pickle is truncated (it ends at offset {} without a STOP opcode)", label_,
               pos_);
      op_ = data_[pos_++];
      switch (op_) {
        case 0x80: {  // PROTO
          const uint64_t proto = take_le(1);
          IB_CHECK(proto >= 2 && proto <= 5, "'{}': unsupported pickle protocol {}", label_, proto);
          break;
        }
        case 0x95: take(8); break;  // FRAME: framing only groups opcodes
        case '.': {                 // STOP
          IB_CHECK(marks_.empty(), "'{}': pickle ends with an open MARK", label_);
          return pop();
        }
        case '(':
          IB_CHECK(marks_.size() < kMaxStack, "'{}': too many nested MARKs at offset {}", label_, op_pos_);
          marks_.push_back(stack_.size());
          break;
        case 'N': push(shared(Kind::None)); break;
        case 0x88: case 0x89: push(shared(Kind::Bool, op_ == 0x88)); break;
        case 'J': push(make_int(static_cast<int32_t>(static_cast<uint32_t>(take_le(4))))); break;
        case 'K': push(shared(Kind::Int, static_cast<int64_t>(take_le(1)))); break;
        case 'M': push(make_int(static_cast<int64_t>(take_le(2)))); break;
        case 0x8a: {  // LONG1: n-byte little-endian two's complement
          const size_t n = static_cast<size_t>(take_le(1));
          IB_CHECK(n <= 8, "'{}': {}-byte integer at offset {} is too large", label_, n, op_pos_);
          uint64_t u = n ? take_le(n) : 0;
          if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1u) u |= ~uint64_t{0} << (8 * n);
          push(make_int(static_cast<int64_t>(u)));
          break;
        }
        case 'X': push(make_str(static_cast<size_t>(take_le(4)))); break;
        case 0x8c: push(make_str(static_cast<size_t>(take_le(1)))); break;
        case 0x8d: {
          const uint64_t n = take_le(8);
          IB_CHECK(n <= size_ - pos_, "'{}': string at offset {} runs past the pickle", label_, op_pos_);
          push(make_str(static_cast<size_t>(n)));
          break;
        }
        case ')': push(shared(Kind::Tuple)); break;
        case 't': push(make_tuple(pop_mark())); break;
        case 0x85: case 0x86: case 0x87: {
          std::vector<Value*> items(static_cast<size_t>(op_ - 0x84));
          for (size_t k = items.size(); k-- > 0;) items[k] = pop();
          push(make_tuple(std::move(items)));
          break;
        }
        case '}': push(make(Kind::Dict)); break;
        case 'd': {  // DICT: MARK k v k v ... DICT
          std::vector<Value*> kv = pop_mark();
          IB_CHECK(kv.size() % 2 == 0, "'{}': DICT at offset {} with an odd number of items", label_, op_pos_);
          Value* d = make(Kind::Dict);
          for (size_t k = 0; k < kv.size(); k += 2) set_item(d, kv[k], kv[k + 1]);
          push(d);
          break;
        }
        case 's': {
          Value* val = pop();
          Value* key = pop();
          set_item(top(), key, val);
          break;
        }
        case 'u': {
          std::vector<Value*> kv = pop_mark();
          IB_CHECK(kv.size() % 2 == 0, "'{}': SETITEMS at offset {} with an odd number of items", label_, op_pos_);
          Value* d = top();
          for (size_t k = 0; k < kv.size(); k += 2) set_item(d, kv[k], kv[k + 1]);
          break;
        }
        case 'c': {
          const std::string_view module = take_line();
          const std::string_view name = take_line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value* name = pop();
          Value* module = pop();
          IB_CHECK(name->kind == Kind::Str && module->kind == Kind::Str,
                   "'{}': STACK_GLOBAL at offset {} without two strings", label_, op_pos_);
          push(global(module->s, name->s));
          break;
        }
        case 'R': {
          Value* args = pop();
          Value* fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD: only an OrderedDict's attributes (e.g. state_dict()._metadata), ignored
          Value* state = pop();
          Value* obj = top();
          IB_CHECK(obj->kind == Kind::Dict && (state->kind == Kind::None || state->kind == Kind::Dict),
                   "'{}': BUILD at offset {} on a {} with a {} state is not allowed", label_, op_pos_,
                   kind_name(obj->kind), kind_name(state->kind));
          break;
        }
        case 'Q': push(persistent_load(pop())); break;
        case 'q': memo_put(take_le(1)); break;
        case 'r': memo_put(take_le(4)); break;
        case 0x94: memo_put(memo_.size()); break;
        case 'h': memo_get(take_le(1)); break;
        case 'j': memo_get(take_le(4)); break;
        default: refuse(op_);
      }
    }
  }

  const unsigned char* data_;
  size_t size_;
  const std::string& label_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  unsigned char op_ = 0;
  std::deque<Value> arena_;  // stable addresses
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::map<std::string_view, std::pair<DType, int64_t>> storages_;  // keys point into the pickle
  std::deque<PthTensorRecord> tensors_;
  Value* none_ = nullptr;
  Value* bools_[2] = {nullptr, nullptr};
  Value* empty_tuple_ = nullptr;
  Value* small_ints_[256] = {};
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::map<std::string, PthTensorRecord> parse_state_dict_pickle(const unsigned char* data, size_t size,
                                                              const std::string& label) {
  return Unpickler(data, size, label).run();
}

std::shared_ptr<PthFile> PthFile::open(const std::string& path) {
  auto f = std::shared_ptr<PthFile>(new PthFile());
  require_regular_file(path, ".pth file");
  f->file_ = MappedFile::open(path);
  const unsigned char* base = f->file_->data();
  const std::vector<ZipEntry> entries = parse_zip_directory(base, f->file_->size(), path);

  // <top>/data.pkl, where <top> is any single folder name.
  const ZipEntry* pkl = nullptr;
  for (const auto& e : entries) {
    if (ends_with(e.name, "/data.pkl") && e.name.find('/') == e.name.size() - 9) {
      IB_CHECK(pkl == nullptr, "'{}' holds two pickles ('{}' and '{}')", path, pkl ? pkl->name : "", e.name);
      pkl = &e;
    }
  }
  IB_CHECK(pkl != nullptr,
           "'{}' has no '<folder>/data.pkl' entry: not a PyTorch zip checkpoint (the legacy pre-1.6 format is not "
           "supported)", path);
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);  // "<top>/"
  for (const auto& e : entries) {
    if (e.name == prefix + "byteorder") {
      const std::string order(reinterpret_cast<const char*>(base + e.offset), e.size);
      IB_CHECK(order == "little", "'{}' stores tensors in '{}' byte order; only little-endian is supported", path,
               order);
    } else if (e.name.size() > prefix.size() + 5 && e.name.compare(0, prefix.size() + 5, prefix + "data/") == 0) {
      f->storages_[e.name.substr(prefix.size() + 5)] = {e.offset, e.size};
    }
  }
  f->tensors_ = parse_state_dict_pickle(base + pkl->offset, pkl->size, path);
  for (const auto& [name, r] : f->tensors_) {
    auto it = f->storages_.find(r.storage_key);
    IB_CHECK(it != f->storages_.end(), "'{}': tensor '{}' uses storage '{}', which is missing from the archive", path,
             name, r.storage_key);
    IB_CHECK(static_cast<uint64_t>(r.storage_numel) <= it->second.size / dtype_size(r.dtype),
             "'{}': tensor '{}' uses storage '{}' of {} {} elements, but its entry holds only {} bytes; the file is "
             "truncated or corrupt", path, name, r.storage_key, r.storage_numel, dtype_name(r.dtype),
             it->second.size);
  }
  return f;
}

bool PthFile::contains(const std::string& name) const { return tensors_.count(name) != 0; }

std::vector<std::string> PthFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

TensorInfo PthFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  IB_CHECK(it != tensors_.end(), "tensor '{}' is missing from {}", name, file_->path());
  return {it->second.dtype, it->second.shape};
}

Tensor PthFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  IB_CHECK(it != tensors_.end(), "tensor '{}' is missing from {}", name, file_->path());
  const PthTensorRecord& r = it->second;
  const size_t es = dtype_size(r.dtype);
  const unsigned char* storage = file_->data() + storages_.at(r.storage_key).offset;
  Tensor t;
  const int64_t numel = shape_numel(r.shape);
  if (numel == 0) return Tensor::empty(r.shape, r.dtype);

  bool contiguous = true;
  int64_t expect = 1;
  for (size_t d = r.shape.size(); d-- > 0;) {
    if (r.shape[d] != 1 && r.stride[d] != expect) contiguous = false;
    expect *= r.shape[d];
  }
  const unsigned char* first = storage + static_cast<size_t>(r.storage_offset) * es;
  if (contiguous) {
    const size_t bytes = static_cast<size_t>(numel) * es;
    if (reinterpret_cast<uintptr_t>(first) % es == 0) {
      auto st = Storage::borrow(const_cast<unsigned char*>(first), bytes, Device::CPU, file_);
      return Tensor::from_storage(std::move(st), 0, r.shape, r.dtype);
    }
    t = Tensor::empty(r.shape, r.dtype);
    std::memcpy(t.raw(), first, bytes);
    return t;
  }
  // Strided: gather element by element into a new contiguous tensor.
  t = Tensor::empty(r.shape, r.dtype);
  unsigned char* dst = static_cast<unsigned char*>(t.raw());
  const size_t nd = r.shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t src = 0;  // element index relative to `first`
  for (int64_t i = 0; i < numel; ++i) {
    std::memcpy(dst + static_cast<size_t>(i) * es, first + static_cast<size_t>(src) * es, es);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < r.shape[d]) {
        src += r.stride[d];
        break;
      }
      src -= (r.shape[d] - 1) * r.stride[d];
      idx[d] = 0;
    }
  }
  return t;
}

std::string PthFile::source(const std::string&) const { return file_->path(); }

}  // namespace ib
