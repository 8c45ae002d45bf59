// `civicbus devices import|list`: the device fleet from the command line (docs/CLI.md,
// docs/fleet.md). Private keys of imported devices go to the --keys file (mode 0600) or, with
// --json, to stdout; they are never stored by the node.
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "civicbus/fleet/fleet.hpp"
#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "core/read_file.hpp"

namespace civicbus::cli {
namespace {

Status write_private(const std::string& path, const std::string& text) {
  // Created 0600 before anything is written: the file holds private keys.
  FILE* f = std::fopen(path.c_str(), "wx");
  if (f == nullptr) {
    return io_error(
        fmt::format("cannot create '{}' (it must not exist yet): {}", path, std::strerror(errno)));
  }
  ::fchmod(::fileno(f), 0600);
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) return io_error(fmt::format("cannot write '{}'", path));
  return Status();
}

}  // namespace

int run_devices_import(const Args& args) {
  if (args.positionals().size() != 1)
    return usage_error("devices import", "give the FILE to import");
  const std::string file = args.positionals()[0];
  auto text = read_text_file(file);
  if (!text.ok()) return fail(text.status());
  fleet::ImportFormat format = fleet::ImportFormat::kAuto;
  if (auto f = args.value("format")) {
    if (*f == "csv")
      format = fleet::ImportFormat::kCsv;
    else if (*f == "json")
      format = fleet::ImportFormat::kJson;
    else
      return usage_error("devices import", "--format must be csv or json");
  } else if (file.ends_with(".csv")) {
    format = fleet::ImportFormat::kCsv;
  } else if (file.ends_with(".json")) {
    format = fleet::ImportFormat::kJson;
  }
  const bool json = args.has("json");
  auto keys_path = args.value("keys");
  if (!json && !keys_path) {
    return usage_error("devices import",
                       "give --keys FILE for the devices' private keys (or --json to print them): "
                       "they are shown once and never stored");
  }

  int code = kExitOk;
  auto node = open_node(args, "devices import", code, NodeParts::kWithFleet);
  if (!node) return code;
  fleet::DeviceFleet* fleet = node->fleet();
  if (fleet == nullptr) return fail("the node opened no device fleet");

  Progress progress("certificates", ::isatty(STDERR_FILENO) == 1);
  const std::string actor = args.value("actor").value_or("civicbus-cli");
  auto report = fleet->import_devices(
      *text, format, actor,
      [&](std::size_t done, std::size_t total) { progress.update(done, total); });
  if (!report.ok()) return fail(report.status().with_context(file));

  if (json) {
    std::printf("%s\n", report->to_json().dump().c_str());
  } else {
    std::string keys;
    for (const auto& p : report->provisioned) {
      keys += fmt::format("# device {}\n{}{}", p.device->id, p.certificate_pem, p.private_key_pem);
    }
    if (!report->provisioned.empty()) {
      Status s = write_private(*keys_path, keys);
      if (!s.ok()) return fail(s);
    }
    std::printf("imported %zu devices in %.1f s; %zu rows refused\n", report->provisioned.size(),
                report->elapsed.count() / 1000.0, report->errors.size());
    for (const auto& e : report->errors) {
      std::printf("  %s: %s%s%s\n", e.where.c_str(), e.field.c_str(), e.field.empty() ? "" : ": ",
                  e.reason.c_str());
    }
    if (!report->provisioned.empty()) {
      std::printf("certificates and private keys: %s (mode 0600)\n", keys_path->c_str());
    }
  }
  if (auto errors = args.value("errors"); errors && !report->errors.empty()) {
    std::ofstream out(*errors);
    out << report->errors_csv();
  }
  return report->errors.empty() ? kExitOk : kExitFailure;
}

int run_devices_list(const Args& args) {
  int code = kExitOk;
  auto node = open_node(args, "devices list", code, NodeParts::kWithFleet);
  if (!node) return code;
  fleet::DeviceFleet* fleet = node->fleet();
  if (fleet == nullptr) return fail("the node opened no device fleet");
  fleet::DeviceQuery q;
  if (auto t = args.value("type")) q.type = *t;
  if (auto s = args.value("status")) {
    auto status = fleet::parse_status(*s);
    if (!status.ok()) return usage_error("devices list", status.status().message());
    q.status = *status;
  }
  q.limit = 1000;
  if (auto l = args.value("limit")) q.limit = std::strtoul(l->c_str(), nullptr, 10);
  auto result = fleet->devices(q);
  if (args.has("json")) {
    for (const auto& d : result.devices) std::printf("%s\n", d->to_json().dump().c_str());
    return kExitOk;
  }
  Table table({"ID", "TYPE", "STATUS", "FIRMWARE", "LOCATION", "DEPARTMENT"});
  for (const auto& d : result.devices) {
    table.add({d->id, d->type, std::string(fleet::status_name(d->status)), d->firmware_version,
               d->location ? fmt::format("{:.5f},{:.5f}", d->location->lat, d->location->lon) : "",
               d->department});
  }
  std::printf("%s%zu of %zu devices\n", table.render().c_str(), result.devices.size(),
              result.total);
  return kExitOk;
}

}  // namespace civicbus::cli
