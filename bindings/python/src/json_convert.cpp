// The one converter between civicbus::Json and Python values. Events, configuration, rules and
// records cross the module boundary through here, so the mapping is the same everywhere:
// null ↔ None, bool ↔ bool, int ↔ int (beyond int64: float, as Json(unsigned long) does),
// double ↔ float, string ↔ str, array ↔ list (tuples are read as arrays), object ↔ dict
// (member order kept; keys must be str).
#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "common.hpp"

namespace civicbus::python {
namespace {

// Python objects nest at most this deep: a self-referencing list must fail, not overflow
// the stack.
constexpr int kMaxDepth = 512;

std::string type_name(py::handle value) {
  return py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>();
}

Json from_python(py::handle value, std::string& where, int depth) {
  if (depth > kMaxDepth) {
    throw py::value_error(
        fmt::format("cannot convert to JSON: nested deeper than {} at {}", kMaxDepth, where));
  }
  if (value.is_none()) return Json();
  // bool before int: bool is a subclass of int in Python.
  if (PyBool_Check(value.ptr())) return Json(value.ptr() == Py_True);
  if (PyLong_Check(value.ptr())) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow == 0) {
      if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
      return Json(v);
    }
    double d = PyLong_AsDouble(value.ptr());
    if (d == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return Json(d);
  }
  if (PyFloat_Check(value.ptr())) return Json(PyFloat_AS_DOUBLE(value.ptr()));
  if (PyUnicode_Check(value.ptr())) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(value.ptr(), &size);
    if (data == nullptr) throw py::error_already_set();
    return Json(std::string(data, static_cast<std::size_t>(size)));
  }
  if (PyDict_Check(value.ptr())) {
    Json::Object members;
    members.reserve(static_cast<std::size_t>(PyDict_Size(value.ptr())));
    for (auto item : py::reinterpret_borrow<py::dict>(value)) {
      if (!PyUnicode_Check(item.first.ptr())) {
        throw py::type_error(
            fmt::format("cannot convert to JSON: a key of the dict at {} is {} "
                        "({}); JSON object keys are str",
                        where, type_name(item.first), py::repr(item.first).cast<std::string>()));
      }
      std::string key = item.first.cast<std::string>();
      const std::size_t mark = where.size();
      where += ".";
      where += key;
      members.emplace_back(key, from_python(item.second, where, depth + 1));
      where.resize(mark);
    }
    return Json(std::move(members));
  }
  if (PyList_Check(value.ptr()) || PyTuple_Check(value.ptr())) {
    py::sequence items = py::reinterpret_borrow<py::sequence>(value);
    Json::Array array;
    array.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::size_t mark = where.size();
      where += fmt::format("[{}]", i);
      array.push_back(from_python(items[i], where, depth + 1));
      where.resize(mark);
    }
    return Json(std::move(array));
  }
  throw py::type_error(
      fmt::format("cannot convert {} at {} to JSON; use dict, list, str, int, "
                  "float, bool or None",
                  type_name(value), where));
}

}  // namespace

Json json_from_python(py::handle value) {
  std::string where = "$";
  return from_python(value, where, 0);
}

py::object json_to_python(const Json& value) {
  switch (value.type()) {
    case Json::Type::kNull:
      return py::none();
    case Json::Type::kBool:
      return py::bool_(value.as_bool());
    case Json::Type::kInt:
      return py::int_(value.as_int());
    case Json::Type::kDouble:
      return py::float_(value.as_double());
    case Json::Type::kString: {
      // "replace": bytes that are not UTF-8 (a binary field of a legacy extract) must not make
      // the whole event unreadable.
      const std::string& text = value.as_string();
      PyObject* decoded =
          PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
      if (decoded == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(decoded);
    }
    case Json::Type::kArray: {
      const Json::Array& items = value.as_array();
      py::list list(items.size());
      for (std::size_t i = 0; i < items.size(); ++i) {
        list[i] = json_to_python(items[i]);
      }
      return list;
    }
    case Json::Type::kObject: {
      py::dict dict;
      for (const auto& [key, member] : value.as_object())
        dict[py::str(key)] = json_to_python(member);
      return dict;
    }
  }
  return py::none();
}

}  // namespace civicbus::python
