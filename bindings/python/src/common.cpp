// Errors, times, calls into Python from C++ threads, and lifetimes (see common.hpp).
#include "common.hpp"

#include <fmt/format.h>

#include <array>
#include <sstream>

namespace civicbus::python {
namespace {

// One exception class per ErrorCode, indexed by the code; [0] is civicbus.Error itself. Kept
// for the life of the process (the module holds them too), so raising never imports.
std::array<py::object, 16>* g_error_types = nullptr;

constexpr int kLastCode = static_cast<int>(ErrorCode::kOutOfRange);

// "invalid_argument" → "InvalidArgument".
std::string class_name_of(std::string_view code_name) {
  std::string name;
  bool upper = true;
  for (char c : code_name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    name += upper ? static_cast<char>(c - 'a' + 'A') : c;
    upper = false;
  }
  return name;
}

// The base class is Python code so that it behaves as any Python exception: it can be raised
// and subclassed from Python, and `message` is set however it is constructed.
constexpr const char* kErrorSource = R"python(
class Error(Exception):
    """A civicbus call failed. ``code`` is the stable lower-case name of the status code
    ("not_found"); ``message`` (and ``str()``) is the C++ message, which names what is wrong
    and where. Raised as the subclass of the code (``NotFound``, ``InvalidArgument``...);
    raising one of them from a handler gives the C++ side that code."""

    code = "unknown"

    def __init__(self, message: str = "") -> None:
        """An error with `message`; its code is the class's."""
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        """The message, as the C++ status has it."""
        return self.message
)python";

void raise_status(const Status& status) {
  int index = static_cast<int>(status.code());
  if (index < 1 || index > kLastCode) index = 0;
  py::object type = (*g_error_types)[static_cast<std::size_t>(index)];
  py::object instance = type(status.message());
  PyErr_SetObject(type.ptr(), instance.ptr());
}

std::mutex& exit_mutex() {
  static auto* mu = new std::mutex;  // never destroyed: used from the atexit hook
  return *mu;
}
std::vector<std::weak_ptr<Closeable>>& exit_list() {
  static auto* list = new std::vector<std::weak_ptr<Closeable>>;
  return *list;
}

}  // namespace

// ---- errors ---------------------------------------------------------------------------------

void init_errors(py::module_& m) {
  py::dict scope = m.attr("__dict__");
  py::exec(kErrorSource, scope);
  g_error_types = new std::array<py::object, 16>();
  py::object base = m.attr("Error");
  (*g_error_types)[0] = base;
  for (int code = 1; code <= kLastCode; ++code) {
    const std::string_view code_name = error_code_name(static_cast<ErrorCode>(code));
    const std::string name = class_name_of(code_name);
    py::dict attributes;
    attributes["code"] = py::str(code_name);
    attributes["__module__"] = m.attr("__name__");
    attributes["__doc__"] =
        py::str(fmt::format("Raised for a civicbus status '{}' (code {}).", code_name, code));
    py::object type = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyType_Type))(
        name, py::make_tuple(base), attributes);
    m.attr(name.c_str()) = type;
    (*g_error_types)[static_cast<std::size_t>(code)] = type;
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      raise_status(e.status());
    }
  });
}

bool is_civicbus_error(py::error_already_set& error) {
  return g_error_types != nullptr && error.matches((*g_error_types)[0]);
}

Status status_from_python(py::error_already_set& error, std::string_view context) {
  if (is_civicbus_error(error)) {
    const std::string code = py::str(error.value().attr("code")).cast<std::string>();
    std::string message = py::str(error.value()).cast<std::string>();
    for (int c = 1; c <= kLastCode; ++c) {
      if (error_code_name(static_cast<ErrorCode>(c)) == code) {
        return Status(static_cast<ErrorCode>(c), std::move(message));
      }
    }
    return internal_error(std::move(message));
  }
  const std::string type = py::str(error.type().attr("__name__")).cast<std::string>();
  const std::string text = py::str(error.value()).cast<std::string>();
  return internal_error(text.empty() ? fmt::format("{} raised {}", context, type)
                                     : fmt::format("{} raised {}: {}", context, type, text));
}

void print_python_error(py::error_already_set& error, std::string_view context) {
  try {
    py::module_ sys = py::module_::import("sys");
    py::module_ traceback = py::module_::import("traceback");
    py::object err = sys.attr("stderr");
    err.attr("write")(fmt::format("civicbus: {} raised an exception:\n", context));
    traceback.attr("print_exception")(error.type(), error.value(), error.trace(),
                                      py::arg("file") = err);
  } catch (py::error_already_set&) {
    // Printing is a courtesy; a broken sys.stderr must not fail the request.
  }
}

// ---- times --------------------------------------------------------------------------------

py::object datetime_from(SystemTime t) {
  py::module_ datetime = py::module_::import("datetime");
  py::object utc = datetime.attr("timezone").attr("utc");
  py::object epoch = datetime.attr("datetime")(1970, 1, 1, py::arg("tzinfo") = utc);
  return epoch + datetime.attr("timedelta")(py::arg("microseconds") = to_unix_micros(t));
}

SystemTime time_from_python(py::handle value) {
  py::module_ datetime = py::module_::import("datetime");
  if (py::isinstance(value, datetime.attr("datetime"))) {
    py::object utc = datetime.attr("timezone").attr("utc");
    py::object t = py::reinterpret_borrow<py::object>(value);
    if (t.attr("tzinfo").is_none()) t = t.attr("replace")(py::arg("tzinfo") = utc);
    py::object epoch = datetime.attr("datetime")(1970, 1, 1, py::arg("tzinfo") = utc);
    py::object micros =
        (t - epoch).attr("__floordiv__")(datetime.attr("timedelta")(py::arg("microseconds") = 1));
    return from_unix_micros(micros.cast<std::int64_t>());
  }
  if (PyLong_Check(value.ptr()) || PyFloat_Check(value.ptr())) {
    const double seconds = value.cast<double>();
    return from_unix_micros(static_cast<std::int64_t>(seconds * 1e6));
  }
  throw py::type_error(
      fmt::format("expected a datetime or seconds since the Unix epoch, got {}",
                  py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>()));
}

// ---- calling Python ---------------------------------------------------------------------------

namespace {
thread_local int g_callback_depth = 0;
}  // namespace

CallbackScope::CallbackScope() {
  ++g_callback_depth;
}
CallbackScope::~CallbackScope() {
  --g_callback_depth;
}

void refuse_close_in_callback(std::string_view what) {
  if (g_callback_depth > 0) {
    throw StatusError(failed_precondition(
        fmt::format("the {} cannot be closed from inside a handler, connector or stage it runs "
                    "(closing waits for them); close it from another thread",
                    what)));
  }
}

bool python_finalizing() {
  return !Py_IsInitialized() || _Py_IsFinalizing() != 0;
}

Status call_python(std::string_view context, const std::function<void()>& body) {
  if (python_finalizing()) {
    return cancelled(fmt::format("{}: the Python interpreter is shutting down", context));
  }
  py::gil_scoped_acquire gil;
  CallbackScope scope;
  try {
    body();
    return {};
  } catch (py::error_already_set& e) {
    return status_from_python(e, context);
  } catch (const StatusError& e) {
    return e.status();
  } catch (const std::exception& e) {
    return internal_error(fmt::format("{}: {}", context, e.what()));
  }
}

PyHandle share(py::object object) {
  return PyHandle(new py::object(std::move(object)), [](py::object* p) {
    if (python_finalizing()) {
      (void)p->release();  // the interpreter is gone or going: leak rather than crash
      delete p;
      return;
    }
    py::gil_scoped_acquire gil;
    delete p;
  });
}

void without_gil(const std::function<void()>& body) {
  if (Py_IsInitialized() && PyGILState_Check()) {
    py::gil_scoped_release nogil;
    body();
  } else {
    body();
  }
}

// ---- lifetimes -------------------------------------------------------------------------------

Lifetime::Use Lifetime::use() const {
  if (closed_.load())
    throw StatusError(failed_precondition(fmt::format("the {} is closed", what_)));
  Use use(use_mu_);
  // close() may have won the lock meanwhile.
  if (closed_.load())
    throw StatusError(failed_precondition(fmt::format("the {} is closed", what_)));
  return use;
}

void Lifetime::add_dependent(std::weak_ptr<Closeable> dependent) {
  std::lock_guard<std::mutex> lock(dependents_mu_);
  // Drop the entries of dependents already gone, so a long-lived node does not grow a list.
  std::erase_if(dependents_, [](const std::weak_ptr<Closeable>& d) { return d.expired(); });
  dependents_.push_back(std::move(dependent));
}

void Lifetime::close() {
  std::lock_guard<std::mutex> serial(close_mu_);
  if (closed_.load()) return;
  // Dependents first (newest first): a subscription stops while its broker still runs, and
  // its handlers may still call the node meanwhile.
  std::vector<std::weak_ptr<Closeable>> dependents;
  {
    std::lock_guard<std::mutex> lock(dependents_mu_);
    dependents.swap(dependents_);
  }
  for (auto it = dependents.rbegin(); it != dependents.rend(); ++it) {
    if (auto d = it->lock()) d->close();
  }
  closed_.store(true);
  interrupt();
  std::unique_lock<std::shared_mutex> exclusive(use_mu_);
  destroy();
}

void Lifetime::close_from_destructor() {
  without_gil([this] { close(); });
}

void Lifetime::register_for_exit() {
  register_closeable_for_exit(weak_from_this());
}

void register_closeable_for_exit(std::weak_ptr<Closeable> closeable) {
  std::lock_guard<std::mutex> lock(exit_mutex());
  auto& list = exit_list();
  std::erase_if(list, [](const std::weak_ptr<Closeable>& c) { return c.expired(); });
  list.push_back(std::move(closeable));
}

void close_all_for_exit() {
  std::vector<std::shared_ptr<Closeable>> alive;
  {
    std::lock_guard<std::mutex> lock(exit_mutex());
    for (auto it = exit_list().rbegin(); it != exit_list().rend(); ++it) {
      if (auto c = it->lock()) alive.push_back(std::move(c));
    }
    exit_list().clear();
  }
  without_gil([&] {
    for (auto& c : alive) c->close();
  });
  // The last references may go here, with the GIL held: every object is closed already, so
  // its destructor has nothing left to wait for.
  alive.clear();
}

// ---- configuration text ------------------------------------------------------------------------

std::string config_text(py::handle config, std::string_view section) {
  if (config.is_none()) return section.empty() ? std::string() : fmt::format("{}: {{}}\n", section);
  if (py::isinstance<py::str>(config)) {
    const std::string text = config.cast<std::string>();
    if (section.empty()) return text;
    // YAML text of the section's body: indent it under the section's key.
    std::string out = fmt::format("{}:\n", section);
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      out += "  ";
      out += line;
      out += '\n';
    }
    return out;
  }
  Json value = json_from_python(config);
  if (!value.is_object()) {
    throw py::type_error(
        fmt::format("a configuration is a dict or YAML text, got {}",
                    py::str(py::type::handle_of(config).attr("__name__")).cast<std::string>()));
  }
  if (!section.empty()) value = Json::object({{std::string(section), std::move(value)}});
  // JSON is YAML (flow style); pretty-printed, so the loader's line numbers point at a key.
  return value.dump(2) + "\n";
}

}  // namespace civicbus::python
