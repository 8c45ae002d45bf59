// civicbus.DeviceFleet (a node's fleet): registry, ingestion, time series, alerts, rollouts.
// Devices, groups, rules and rollouts cross as dicts in their documented JSON forms
// (docs/fleet.md); readings, alerts and series as small classes. Ingestion, queries and
// alert transitions release the GIL; an on_action handler runs with it taken.
#include <fmt/format.h>

#include "handles.hpp"

namespace civicbus::python {
namespace {

using fleet::DeviceFleet;

fleet::Reading reading_from(const py::handle& item) {
  if (py::isinstance<fleet::Reading>(item)) return item.cast<fleet::Reading>();
  if (py::isinstance<py::tuple>(item)) {  // (device_id, metric, value, time[, unit])
    py::tuple t = item.cast<py::tuple>();
    if (t.size() < 4 || t.size() > 5) {
      throw py::type_error("a reading tuple is (device_id, metric, value, time_ms[, unit])");
    }
    fleet::Reading r;
    r.device_id = t[0].cast<std::string>();
    r.metric = t[1].cast<std::string>();
    r.value = t[2].cast<double>();
    r.time = t[3].cast<fleet::TimeMs>();
    if (t.size() == 5) r.unit = t[4].cast<std::string>();
    return r;
  }
  py::dict d = item.cast<py::dict>();
  fleet::Reading r;
  r.device_id = d["device_id"].cast<std::string>();
  r.metric = d["metric"].cast<std::string>();
  r.value = d["value"].cast<double>();
  r.time = d["time"].cast<fleet::TimeMs>();
  if (d.contains("unit")) r.unit = d["unit"].cast<std::string>();
  return r;
}

std::optional<fleet::AlertState> parse_alert_state(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  for (auto v : {fleet::AlertState::kRaised, fleet::AlertState::kAcknowledged,
                 fleet::AlertState::kResolved}) {
    if (fleet::alert_state_name(v) == *s) return v;
  }
  throw StatusError(invalid_argument(
      fmt::format("alert state must be 'raised', 'acknowledged' or 'resolved', got '{}'", *s)));
}

std::optional<fleet::Severity> parse_severity(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  for (auto v : {fleet::Severity::kWarning, fleet::Severity::kCritical}) {
    if (fleet::severity_name(v) == *s) return v;
  }
  throw StatusError(
      invalid_argument(fmt::format("severity must be 'warning' or 'critical', got '{}'", *s)));
}

std::string body_text(const py::object& body) {
  if (py::isinstance<py::str>(body)) return body.cast<std::string>();
  if (py::isinstance<py::bytes>(body)) return body.cast<std::string>();
  return json_from_python(body).dump();
}

py::object device_or_none(const std::shared_ptr<const fleet::Device>& d) {
  return d ? to_py(d->to_json()) : py::object(py::none());
}

void bind_types(py::module_& m) {
  py::class_<fleet::Reading>(m, "Reading", "One measurement of one device.")
      .def(py::init([](std::string device_id, std::string metric, double value, fleet::TimeMs time,
                       std::string unit) {
             return fleet::Reading{std::move(device_id), std::move(metric), value, std::move(unit),
                                   time};
           }),
           py::arg("device_id"), py::arg("metric"), py::arg("value"), py::arg("time"),
           py::kw_only(), py::arg("unit") = "",
           "A reading; `time` in milliseconds since the Unix epoch, `unit` \"\" for the type's.")
      .def_readonly("device_id", &fleet::Reading::device_id, "The device.")
      .def_readonly("metric", &fleet::Reading::metric, "\"flow_rate\", \"pm2_5\"...")
      .def_readonly("value", &fleet::Reading::value, "The value.")
      .def_readonly("unit", &fleet::Reading::unit, "The unit (\"\": the type's).")
      .def_readonly("time", &fleet::Reading::time, "Milliseconds since the Unix epoch.");

  py::class_<fleet::Rejection>(m, "Rejection", "A reading refused at ingestion, and why.")
      .def_readonly("reading", &fleet::Rejection::reading, "The reading.")
      .def_property_readonly(
          "reason",
          [](const fleet::Rejection& r) { return std::string(reject_reason_name(r.reason)); },
          "\"unknown_device\", \"unknown_metric\", \"out_of_range\"...")
      .def_readonly("message", &fleet::Rejection::message, "Names the device, metric and problem.");

  py::class_<fleet::IngestResult>(m, "IngestResult", "What ingest() accepted and refused.")
      .def_readonly("accepted", &fleet::IngestResult::accepted, "Readings stored.")
      .def_readonly("rejected", &fleet::IngestResult::rejected, "Readings refused.");

  py::class_<fleet::SeriesPoint>(m, "SeriesPoint",
                                 "A point of a series: a raw reading (count 1) or a bucket.")
      .def_readonly("time", &fleet::SeriesPoint::time, "Reading time or bucket start (ms).")
      .def_readonly("count", &fleet::SeriesPoint::count, "Readings in the bucket.")
      .def_readonly("sum", &fleet::SeriesPoint::sum, "Sum.")
      .def_readonly("min", &fleet::SeriesPoint::min, "Minimum.")
      .def_readonly("max", &fleet::SeriesPoint::max, "Maximum.")
      .def_readonly("avg", &fleet::SeriesPoint::avg, "Average.")
      .def_readonly("first", &fleet::SeriesPoint::first, "First value.")
      .def_readonly("last", &fleet::SeriesPoint::last, "Last value.");

  py::class_<fleet::SeriesResult>(m, "SeriesResult", "A device metric's readings over a range.")
      .def_readonly("tier", &fleet::SeriesResult::tier, "\"raw\", \"5m\", \"1h\" or \"1d\".")
      .def_readonly("points", &fleet::SeriesResult::points, "The points, oldest first.")
      .def("to_dict", &fleet::SeriesResult::to_json, "The HTTP API's JSON form.");

  py::class_<fleet::LatestReading>(m, "LatestReading", "A device's latest value of a metric.")
      .def_readonly("metric", &fleet::LatestReading::metric, "The metric.")
      .def_readonly("value", &fleet::LatestReading::value, "The value.")
      .def_readonly("unit", &fleet::LatestReading::unit, "The unit.")
      .def_readonly("time", &fleet::LatestReading::time, "When (ms).");

  py::class_<fleet::Alert>(m, "Alert",
                           "An alert raised by a rule: raised → acknowledged → resolved.")
      .def_readonly("id", &fleet::Alert::id, "The alert id.")
      .def_readonly("rule_id", &fleet::Alert::rule_id, "The rule that raised it.")
      .def_readonly("device_id", &fleet::Alert::device_id, "The device (\"\" when composite).")
      .def_readonly("devices", &fleet::Alert::devices, "Every device involved.")
      .def_readonly("metric", &fleet::Alert::metric, "The metric.")
      .def_property_readonly(
          "severity", [](const fleet::Alert& a) { return std::string(severity_name(a.severity)); },
          "\"warning\" or \"critical\".")
      .def_property_readonly(
          "state", [](const fleet::Alert& a) { return std::string(alert_state_name(a.state)); },
          "\"raised\", \"acknowledged\" or \"resolved\".")
      .def_readonly("message", &fleet::Alert::message, "What happened.")
      .def_readonly("value", &fleet::Alert::value, "The reading that raised it.")
      .def_readonly("raised_at", &fleet::Alert::raised_at, "When raised (ms).")
      .def_readonly("updated_at", &fleet::Alert::updated_at, "Last change (ms).")
      .def_readonly("acknowledged_by", &fleet::Alert::acknowledged_by, "Who acknowledged it.")
      .def_readonly("acknowledge_note", &fleet::Alert::acknowledge_note, "Their note.")
      .def_readonly("resolved_by", &fleet::Alert::resolved_by,
                    "Who resolved it (\"system\" when the condition cleared).")
      .def_readonly("resolve_note", &fleet::Alert::resolve_note, "Their note.")
      .def("to_dict", &fleet::Alert::to_json, "The alert as a dict.")
      .def("__repr__", [](const fleet::Alert& a) {
        return fmt::format("<civicbus.Alert {} {} {} {}>", a.rule_id, a.device_id,
                           severity_name(a.severity), alert_state_name(a.state));
      });

  py::class_<fleet::FleetStats>(m, "FleetStats", "Counts of the fleet.")
      .def_readonly("devices", &fleet::FleetStats::devices, "Devices.")
      .def_readonly("readings_accepted", &fleet::FleetStats::readings_accepted, "Readings stored.")
      .def_readonly("readings_rejected", &fleet::FleetStats::readings_rejected, "Readings refused.")
      .def_readonly("active_alerts", &fleet::FleetStats::active_alerts, "Active alerts.")
      .def_readonly("mqtt_messages", &fleet::FleetStats::mqtt_messages, "MQTT messages.")
      .def_readonly("edge_buffered", &fleet::FleetStats::edge_buffered, "Edge buffer depth.");
}

}  // namespace

void init_fleet(py::module_& m) {
  bind_types(m);
  py::class_<FleetRef>(m, "DeviceFleet", R"doc(
A node's device fleet (Node.fleet): device types and devices, groups and twins, ingestion and
time series with rollups, alert rules and alerts, OTA rollouts. Devices, groups, rules and
rollouts are dicts in their documented JSON forms (docs/fleet.md); times are milliseconds
since the Unix epoch.
)doc")
      .def(
          "register_type",
          [](const FleetRef& self, const Json& type) {
            fleet::DeviceType t = unwrap(fleet::parse_device_type(type));
            check(self.with([&](DeviceFleet& f) { return f.register_type(std::move(t)); }));
          },
          py::arg("device_type"),
          "Adds or replaces a device type ({\"name\", \"metrics\": [{\"name\", \"unit\", "
          "\"min\", \"max\"}], \"expected_interval_s\", \"default_rules\"...}).")
      .def(
          "device_types",
          [](const FleetRef& self) {
            auto types = self.with([](DeviceFleet& f) { return f.device_types(); });
            py::list out;
            for (const auto& t : types) out.append(to_py(fleet::device_type_to_json(t)));
            return out;
          },
          "Every device type (dicts).")
      .def(
          "provision",
          [](const FleetRef& self, const Json& device, std::string_view actor) {
            fleet::Device d = unwrap(fleet::Device::from_json(device));
            return unwrap(
                       self.with([&](DeviceFleet& f) { return f.provision(std::move(d), actor); }))
                .to_json();
          },
          py::arg("device"), py::kw_only(), py::arg("actor") = "python",
          "Provisions a device (dict: id, serial, type, location...); returns it with its "
          "certificate, key (shown once), MQTT topics and rules.")
      .def(
          "import_devices",
          [](const FleetRef& self, std::string text, std::string_view format,
             std::string_view actor) {
            fleet::ImportFormat f = fleet::ImportFormat::kAuto;
            if (format == "csv") {
              f = fleet::ImportFormat::kCsv;
            } else if (format == "json") {
              f = fleet::ImportFormat::kJson;
            } else if (format != "auto") {
              throw StatusError(invalid_argument(
                  fmt::format("format must be 'auto', 'csv' or 'json', got '{}'", format)));
            }
            return unwrap(self.with(
                              [&](DeviceFleet& fl) { return fl.import_devices(text, f, actor); }))
                .to_json();
          },
          py::arg("text"), py::kw_only(), py::arg("format") = "auto", py::arg("actor") = "python",
          "Provisions devices from CSV or JSON text; bad rows are reported by line (dict: "
          "provisioned, failed, devices, errors).")
      .def(
          "device",
          [](const FleetRef& self, std::string_view id) {
            return device_or_none(self.with([&](DeviceFleet& f) { return f.device(id); }));
          },
          py::arg("id"), "A device (dict), or None.")
      .def(
          "devices",
          [](const FleetRef& self, const py::object& query) {
            fleet::DeviceQuery q;
            if (!query.is_none())
              q = unwrap(fleet::DeviceQuery::from_json(json_from_python(query)));
            auto result = self.with([&](DeviceFleet& f) { return f.devices(q); });
            py::list devices;
            for (const auto& d : result.devices) devices.append(to_py(d->to_json()));
            py::dict out;
            out["devices"] = devices;
            out["total"] = result.total;
            return out;
          },
          py::arg("query") = py::none(),
          "Devices matching a query dict (type, status, department, tags, bbox, circle, "
          "limit, offset): {\"devices\": [...], \"total\": n}.")
      .def(
          "update_device",
          [](const FleetRef& self, std::string_view id, const Json& update,
             std::string_view actor) {
            fleet::DeviceUpdate u = unwrap(fleet::DeviceUpdate::from_json(update));
            return device_or_none(
                unwrap(self.with([&](DeviceFleet& f) { return f.update_device(id, u, actor); })));
          },
          py::arg("id"), py::arg("update"), py::kw_only(), py::arg("actor") = "python",
          "Changes a device's metadata (dict of the fields to change).")
      .def(
          "set_status",
          [](const FleetRef& self, std::string_view id, std::string_view status,
             std::string_view actor, std::string_view reason) {
            fleet::DeviceStatus s = unwrap(fleet::parse_status(status));
            return device_or_none(unwrap(
                self.with([&](DeviceFleet& f) { return f.set_status(id, s, actor, reason); })));
          },
          py::arg("id"), py::arg("status"), py::kw_only(), py::arg("actor") = "python",
          py::arg("reason") = "",
          "Moves a device to \"active\", \"maintenance\" or \"decommissioned\".")
      .def(
          "history",
          [](const FleetRef& self, std::string_view id) {
            auto changes = unwrap(self.with([&](DeviceFleet& f) { return f.history(id); }));
            py::list out;
            for (const auto& c : changes) {
              py::dict d;
              d["device_id"] = c.device_id;
              d["from"] = std::string(fleet::status_name(c.from));
              d["to"] = std::string(fleet::status_name(c.to));
              d["actor"] = c.actor;
              d["reason"] = c.reason;
              d["at"] = c.at;
              out.append(d);
            }
            return out;
          },
          py::arg("id"), "A device's status changes (dicts).")
      .def(
          "decommission_where",
          [](const FleetRef& self, const Json& query, std::string_view actor,
             std::string_view reason) {
            fleet::DeviceQuery q = unwrap(fleet::DeviceQuery::from_json(query));
            return unwrap(
                self.with([&](DeviceFleet& f) { return f.decommission_where(q, actor, reason); }));
          },
          py::arg("query"), py::kw_only(), py::arg("actor") = "python", py::arg("reason") = "",
          "Decommissions every device matching the query; returns their ids.")
      .def(
          "create_group",
          [](const FleetRef& self, const Json& group, std::string_view actor) {
            fleet::Group g = unwrap(fleet::Group::from_json(group));
            return unwrap(self.with(
                              [&](DeviceFleet& f) { return f.create_group(std::move(g), actor); }))
                .to_json();
          },
          py::arg("group"), py::kw_only(), py::arg("actor") = "python",
          "Creates a static ({\"name\", \"members\"}) or query ({\"name\", \"kind\": \"query\", "
          "\"query\"}) group.")
      .def(
          "group",
          [](const FleetRef& self, std::string_view id) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.group(id); })).to_json();
          },
          py::arg("id"), "A group (dict); raises NotFound.")
      .def(
          "groups",
          [](const FleetRef& self) {
            auto groups = self.with([](DeviceFleet& f) { return f.groups(); });
            py::list out;
            for (const auto& g : groups) out.append(to_py(g.to_json()));
            return out;
          },
          "Every group.")
      .def(
          "delete_group",
          [](const FleetRef& self, std::string_view id, std::string_view actor) {
            check(self.with([&](DeviceFleet& f) { return f.delete_group(id, actor); }));
          },
          py::arg("id"), py::kw_only(), py::arg("actor") = "python", "Deletes a group.")
      .def(
          "group_members",
          [](const FleetRef& self, std::string_view id) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.group_members(id); }));
          },
          py::arg("id"), "The device ids of a group.")
      .def(
          "push_config",
          [](const FleetRef& self, std::string_view device_id, const Json& patch,
             std::string_view actor) {
            return unwrap(
                self.with([&](DeviceFleet& f) { return f.push_config(device_id, patch, actor); }));
          },
          py::arg("device_id"), py::arg("patch"), py::kw_only(), py::arg("actor") = "python",
          "Merges `patch` into the device twin's desired state; returns the twin.")
      .def(
          "push_group_config",
          [](const FleetRef& self, std::string_view group_id, const Json& patch,
             std::string_view actor) {
            return unwrap(self.with(
                [&](DeviceFleet& f) { return f.push_group_config(group_id, patch, actor); }));
          },
          py::arg("group_id"), py::arg("patch"), py::kw_only(), py::arg("actor") = "python",
          "push_config for every member of a group; returns the ids updated.")
      .def(
          "report_config",
          [](const FleetRef& self, std::string_view device_id, const Json& reported) {
            return unwrap(
                self.with([&](DeviceFleet& f) { return f.report_config(device_id, reported); }));
          },
          py::arg("device_id"), py::arg("reported"),
          "What the device reports it runs; returns the remaining delta.")
      .def(
          "twin",
          [](const FleetRef& self, std::string_view device_id) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.twin(device_id); }));
          },
          py::arg("device_id"), "The device twin: desired, reported, delta, versions.")
      .def(
          "ingest",
          [](const FleetRef& self, const py::iterable& readings) {
            std::vector<fleet::Reading> list;
            for (auto r : readings) list.push_back(reading_from(r));
            return self.with([&](DeviceFleet& f) { return f.ingest(list); });
          },
          py::arg("readings"),
          "Validates, stores and rolls up readings (Reading objects, dicts {device_id, metric, "
          "value, time, unit} or tuples (device_id, metric, value, time_ms[, unit])) and "
          "evaluates the alert rules.")
      .def(
          "ingest_device_json",
          [](const FleetRef& self, std::string_view device_id, const py::object& body) {
            std::string text = body_text(body);
            return self.with([&](DeviceFleet& f) { return f.ingest_device_json(device_id, text); });
          },
          py::arg("device_id"), py::arg("body"),
          "A device JSON body (dict or text), as the HTTP route and MQTT link take it.")
      .def(
          "ingest_senml",
          [](const FleetRef& self, const py::object& body, std::string_view device_id) {
            std::string text = body_text(body);
            return self.with([&](DeviceFleet& f) { return f.ingest_senml(text, device_id); });
          },
          py::arg("body"), py::arg("device_id") = "", "A SenML pack (list or text).")
      .def(
          "ingest_chirpstack",
          [](const FleetRef& self, const py::object& body) {
            std::string text = body_text(body);
            return self.with([&](DeviceFleet& f) { return f.ingest_chirpstack(text); });
          },
          py::arg("body"), "A ChirpStack v4 uplink.")
      .def(
          "ingest_tts",
          [](const FleetRef& self, const py::object& body) {
            std::string text = body_text(body);
            return self.with([&](DeviceFleet& f) { return f.ingest_tts(text); });
          },
          py::arg("body"), "A The Things Stack v3 uplink.")
      .def(
          "ingest_sigfox",
          [](const FleetRef& self, const py::object& body) {
            std::string text = body_text(body);
            return self.with([&](DeviceFleet& f) { return f.ingest_sigfox(text); });
          },
          py::arg("body"), "A Sigfox callback body.")
      .def(
          "readings",
          [](const FleetRef& self, std::string_view device_id, std::string_view metric,
             fleet::TimeMs start, fleet::TimeMs end, std::string_view agg) {
            return unwrap(self.with(
                [&](DeviceFleet& f) { return f.readings(device_id, metric, start, end, agg); }));
          },
          py::arg("device_id"), py::arg("metric"), py::arg("start"), py::arg("end"), py::kw_only(),
          py::arg("agg") = "",
          "A metric's readings in [start, end] (ms): agg \"raw\", \"5m\", \"1h\", \"1d\" or "
          "\"\"/\"auto\" (the finest tier with at most 1000 points).")
      .def(
          "latest",
          [](const FleetRef& self, std::string_view device_id) {
            return self.with([&](DeviceFleet& f) { return f.latest(device_id); });
          },
          py::arg("device_id"), "A device's latest value of each metric.")
      .def(
          "add_rule",
          [](const FleetRef& self, const Json& rule) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.add_rule(rule); }));
          },
          py::arg("rule"), "Adds an alert rule (docs/fleet.md, \"Rules\"); returns it with its id.")
      .def(
          "put_rule",
          [](const FleetRef& self, const Json& rule) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.put_rule(rule); }));
          },
          py::arg("rule"), "Adds or replaces a rule by id.")
      .def(
          "remove_rule",
          [](const FleetRef& self, std::string_view id) {
            check(self.with([&](DeviceFleet& f) { return f.remove_rule(id); }));
          },
          py::arg("rule_id"), "Removes a rule.")
      .def(
          "rules",
          [](const FleetRef& self) { return self.with([](DeviceFleet& f) { return f.rules(); }); },
          "Every rule (JSON form).")
      .def(
          "alerts",
          [](const FleetRef& self, const std::optional<std::string>& state, bool active_only,
             std::string device_id, const std::optional<std::string>& severity, std::string rule_id,
             std::size_t limit) {
            fleet::AlertQuery q;
            q.state = parse_alert_state(state);
            q.active_only = active_only;
            q.device_id = std::move(device_id);
            q.severity = parse_severity(severity);
            q.rule_id = std::move(rule_id);
            q.limit = limit;
            return unwrap(self.with([&](DeviceFleet& f) { return f.alerts(q); }));
          },
          py::kw_only(), py::arg("state") = py::none(), py::arg("active_only") = false,
          py::arg("device_id") = "", py::arg("severity") = py::none(), py::arg("rule_id") = "",
          py::arg("limit") = 1000, "Alerts matching the filters, newest first.")
      .def(
          "alert",
          [](const FleetRef& self, std::string_view id) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.alert(id); }));
          },
          py::arg("id"), "An alert; raises NotFound.")
      .def(
          "acknowledge",
          [](const FleetRef& self, std::string_view id, std::string_view who,
             std::string_view note) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.acknowledge(id, who, note); }));
          },
          py::arg("alert_id"), py::arg("who"), py::arg("note") = "",
          "Acknowledges a raised alert (who and a note are recorded).")
      .def(
          "resolve",
          [](const FleetRef& self, std::string_view id, std::string_view who,
             std::string_view note) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.resolve(id, who, note); }));
          },
          py::arg("alert_id"), py::arg("who"), py::arg("note") = "", "Resolves an alert.")
      .def(
          "on_action",
          [](const FleetRef& self, const py::object& handler) {
            if (!PyCallable_Check(handler.ptr())) throw py::type_error("handler must be callable");
            DeviceFleet::ActionHandler h = [fn = share(handler)](std::string_view output,
                                                                 std::string_view command,
                                                                 const fleet::Alert& alert) {
              call_python("the fleet's on_action handler", [&] {
                (*fn)(std::string(output), std::string(command), fleet::Alert(alert));
              }).ignore_error();  // an action handler's failure cannot undo the alert
            };
            self.with([&](DeviceFleet& f) {
              f.on_action(std::move(h));
              return true;
            });
          },
          py::arg("handler"),
          "handler(output, command, alert) is called where a rule with actions fires.")
      .def(
          "start_rollout",
          [](const FleetRef& self, const Json& rollout, std::string_view actor) {
            return unwrap(
                self.with([&](DeviceFleet& f) { return f.start_rollout(rollout, actor); }));
          },
          py::arg("rollout"), py::kw_only(), py::arg("actor") = "python",
          "Starts an OTA rollout (docs/fleet.md, \"Rollouts\").")
      .def(
          "rollout",
          [](const FleetRef& self, std::string_view id) {
            return unwrap(self.with([&](DeviceFleet& f) { return f.rollout(id); }));
          },
          py::arg("id"), "A rollout's progress and devices.")
      .def(
          "rollouts",
          [](const FleetRef& self) {
            return self.with([](DeviceFleet& f) { return f.rollouts(); });
          },
          "Every rollout.")
      .def(
          "abort_rollout",
          [](const FleetRef& self, std::string_view id, std::string_view actor,
             std::string_view reason) {
            check(self.with([&](DeviceFleet& f) { return f.abort_rollout(id, actor, reason); }));
          },
          py::arg("id"), py::kw_only(), py::arg("actor") = "python", py::arg("reason") = "",
          "Aborts a rollout.")
      .def(
          "report_ota",
          [](const FleetRef& self, std::string_view device_id, const Json& result) {
            check(self.with([&](DeviceFleet& f) { return f.report_ota(device_id, result); }));
          },
          py::arg("device_id"), py::arg("result"),
          "A device's answer to an OTA command ({\"rollout\", \"success\", \"version\"}).")
      .def(
          "tick",
          [](const FleetRef& self) { check(self.with([](DeviceFleet& f) { return f.tick(); })); },
          "Runs inactivity checks, rollout timeouts and retention now.")
      .def(
          "flush",
          [](const FleetRef& self) { check(self.with([](DeviceFleet& f) { return f.flush(); })); },
          "Makes everything ingested so far durable.")
      .def_property_readonly(
          "mqtt_connected",
          [](const FleetRef& self) {
            return self.with([](DeviceFleet& f) { return f.mqtt_connected(); });
          },
          "Whether the MQTT link is connected.")
      .def_property_readonly(
          "ca_certificate_pem",
          [](const FleetRef& self) {
            return self.with([](DeviceFleet& f) { return f.ca_certificate_pem(); });
          },
          "The device CA's certificate (PEM; \"\" without certificates).")
      .def(
          "stats",
          [](const FleetRef& self) { return self.with([](DeviceFleet& f) { return f.stats(); }); },
          "Counts of devices, readings and alerts.");
}

}  // namespace civicbus::python
