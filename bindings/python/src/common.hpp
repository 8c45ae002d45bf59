// What every translation unit of the Python module shares: the type casters (civicbus::Json as
// Python values, SystemTime as aware UTC datetimes), Status → exception mapping, the helpers
// that call into Python from C++ threads, and Lifetime, which keeps a C++ object usable from
// Python until it is closed and then refuses calls instead of crashing.
//
// GIL rules of the module: every call that may block (I/O, waiting for threads, running
// user code through C++) runs with the GIL released (`py::gil_scoped_release`); every call
// into Python from a C++ thread goes through call_python(), which takes the GIL and turns a
// Python exception into a Status. Python objects kept by C++ (handlers, connectors, stages)
// are held as PyHandle, whose last copy may be dropped on any thread.
#pragma once

#include <pybind11/chrono.h>
#include <pybind11/eval.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace py = pybind11;

namespace civicbus::python {

// ---- JSON (json_convert.cpp: the one converter between civicbus::Json and Python) -------------

// dict (str keys), list, tuple, str, int, float, bool and None; bytes are refused, like any
// other type, with a TypeError naming the type and where it was found ("$.a[2]").
Json json_from_python(py::handle value);
py::object json_to_python(const Json& value);

// ---- times --------------------------------------------------------------------------------------

// An aware datetime in UTC. Loading also takes a naive datetime (read as UTC) or a number of
// seconds since the Unix epoch.
py::object datetime_from(SystemTime t);
SystemTime time_from_python(py::handle value);

}  // namespace civicbus::python

namespace pybind11::detail {

template <>
struct type_caster<civicbus::Json> {
 public:
  PYBIND11_TYPE_CASTER(civicbus::Json, const_name("object"));
  bool load(handle src, bool /*convert*/) {
    value = civicbus::python::json_from_python(src);
    return true;
  }
  static handle cast(const civicbus::Json& src, return_value_policy /*policy*/, handle /*parent*/) {
    return civicbus::python::json_to_python(src).release();
  }
};

// More specialised than pybind11/chrono.h's caster for system_clock time points (which makes
// naive local datetimes): civicbus times are UTC instants, so Python gets aware datetimes.
template <>
struct type_caster<civicbus::SystemTime> {
 public:
  PYBIND11_TYPE_CASTER(civicbus::SystemTime, const_name("datetime.datetime"));
  bool load(handle src, bool convert) {
    if (src.is_none()) return false;
    if (!convert && !PyObject_HasAttrString(src.ptr(), "tzinfo")) return false;
    value = civicbus::python::time_from_python(src);
    return true;
  }
  static handle cast(const civicbus::SystemTime& src, return_value_policy /*policy*/,
                     handle /*parent*/) {
    return civicbus::python::datetime_from(src).release();
  }
};

}  // namespace pybind11::detail

namespace civicbus::python {

// ---- errors ---------------------------------------------------------------------------------

// A non-ok Status on its way to Python; the registered translator raises the matching
// civicbus.Error subclass with the status' message.
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return status_.message().c_str(); }

 private:
  Status status_;
};

inline void check(const Status& status) {
  if (!status.ok()) throw StatusError(status);
}
template <typename T>
T unwrap(Result<T> result) {
  if (!result.ok()) throw StatusError(result.status());
  return std::move(result).value();
}

// The Status a Python exception stands for: a civicbus.Error keeps its code and message;
// anything else is kInternal naming `context`, the exception's type and its text. Needs the
// GIL. Clears nothing: `error` is consumed by the caller.
Status status_from_python(py::error_already_set& error, std::string_view context);
// Whether `error` is a civicbus.Error (a code the C++ side can act on).
bool is_civicbus_error(py::error_already_set& error);
// Writes the exception's traceback to sys.stderr (for handler bugs whose text does not reach
// the client).
void print_python_error(py::error_already_set& error, std::string_view context);

// ---- calling Python from C++ threads ----------------------------------------------------------

// True once the interpreter is shutting down: C++ threads must then not touch Python (taking
// the GIL during finalisation ends the calling thread).
bool python_finalizing();

// Runs `body` with the GIL held (taken when the thread lacks it). A Python exception in it
// becomes status_from_python(context); so does a C++ StatusError. When the interpreter is
// shutting down, returns kCancelled without running it.
Status call_python(std::string_view context, const std::function<void()>& body);

// Marks the calling thread as running Python code on behalf of a C++ component (a handler,
// a connector hook, a stage) while it lives; call_python() sets it.
class CallbackScope {
 public:
  CallbackScope();
  ~CallbackScope();
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};
// Raises FailedPrecondition when called from such code: closing `what` there would wait for
// the very handler that asks (its threads are stopped and joined).
void refuse_close_in_callback(std::string_view what);

// A Python object owned by C++ code: copies and the last release may happen on any thread
// (the release takes the GIL, or leaks the reference when the interpreter is gone).
using PyHandle = std::shared_ptr<py::object>;
PyHandle share(py::object object);

// Runs `body` with the GIL released when the calling thread holds it.
void without_gil(const std::function<void()>& body);

// ---- lifetimes -------------------------------------------------------------------------------

// Something a Python object can close early: a node, a gateway, a subscription, a pipeline.
class Closeable {
 public:
  virtual ~Closeable() = default;
  // Idempotent. Called without the GIL.
  virtual void close() = 0;
};

// A C++ object shared by Python wrappers (a Node and the Broker, Gateway and DeviceFleet views
// of it). Calls hold a Use (a shared lock) for their duration; close() first closes the
// dependents (subscriptions, hubs, stores opened on it), then refuses new calls, waits for
// running ones and destroys the object. Calls after that raise FailedPrecondition
// ("the node is closed"). Every Lifetime is also closed by the interpreter's atexit hook, so
// no C++ thread calls into a finalising interpreter.
class Lifetime : public Closeable, public std::enable_shared_from_this<Lifetime> {
 public:
  explicit Lifetime(std::string what) : what_(std::move(what)) {}

  class Use {
   public:
    explicit Use(std::shared_mutex& mu) : lock_(mu) {}

   private:
    std::shared_lock<std::shared_mutex> lock_;
  };
  // Throws StatusError (kFailedPrecondition) once closed.
  Use use() const;
  bool closed() const { return closed_.load(); }
  // Closed (in reverse order of adding) before this object is destroyed.
  void add_dependent(std::weak_ptr<Closeable> dependent);
  void close() override;
  // For the atexit hook.
  void register_for_exit();

 protected:
  // Called by close() once new calls are refused and before it waits for running ones: makes
  // a call that blocks until told (Node::run) return. Must be thread-safe.
  virtual void interrupt() {}
  // Destroys the C++ object; runs once, with no call in progress and without the GIL.
  virtual void destroy() = 0;
  // For derived destructors: close() with the GIL released.
  void close_from_destructor();

 private:
  std::string what_;
  std::atomic<bool> closed_{false};
  mutable std::shared_mutex use_mu_;
  std::mutex close_mu_;
  std::mutex dependents_mu_;
  std::vector<std::weak_ptr<Closeable>> dependents_;
};

// Closes every registered Lifetime that is still alive (the atexit hook).
void close_all_for_exit();
void register_closeable_for_exit(std::weak_ptr<Closeable> closeable);

// ---- small conversions shared by the components -------------------------------------------

// A dict from a Json object, or None for null.
inline py::object to_py(const Json& j) {
  return json_to_python(j);
}
// Reads the `gateway:`/`fleet:`/... section of a node configuration given as a Python dict or
// YAML text, through NodeOptions::from_yaml (so options built here are checked exactly as a
// node.yaml is). `section` is the top-level key the value is placed under.
std::string config_text(py::handle config, std::string_view section);

// ---- the module's parts -------------------------------------------------------------------

void init_errors(py::module_& m);
// Registers the Node class early (the components take and return it); init_node() adds its
// methods once the component classes exist, so signatures name the Python types.
void declare_node(py::module_& m);
void init_broker(py::module_& m);
void init_gateway(py::module_& m);
void init_connect(py::module_& m);
void init_pipeline(py::module_& m);
void init_match(py::module_& m);
void init_golden(py::module_& m);
void init_fleet(py::module_& m);
void init_node(py::module_& m);

}  // namespace civicbus::python
