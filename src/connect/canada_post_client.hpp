// AddressCompleteClient: Canada Post AddressComplete's two-step lookup — Find
// (free text → candidates, some of which are containers to Find into again)
// then Retrieve (an address Id → the full address) — over the project's HTTP
// client. The `canada_post` connector reads with it, and the hub or a pipeline
// stage may call it per record. Service faults (5xx, timeouts, refused
// connections) are kUnavailable so a circuit breaker can count them; a refused
// key is kUnauthenticated; an address the service does not know is not an error
// (validate() says so).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "rest_client.hpp"

namespace civicbus::connect::detail {

struct AddressCompleteOptions {
  std::string base_url = "https://ws1.postescanada-canadapost.ca";
  std::string api_key;          // the service's "Key"
  std::string country = "CAN";  // ISO 3166 code or name
  std::string language = "en";  // LanguagePreference
  int max_suggestions = 7;
  // How many times validate() follows a container candidate (Next = "Find")
  // before giving up.
  int max_find_depth = 3;
  std::chrono::milliseconds timeout{30'000};
  RetryPolicy retry;
};

// One Find result.
struct AddressCandidate {
  std::string id;
  std::string text;
  std::string description;
  std::string next;  // "Retrieve": an address; "Find": a container to search within
};

// What validate() concluded for one input.
struct AddressValidation {
  enum class Outcome { kValid, kNotFound };
  Outcome outcome = Outcome::kNotFound;
  std::string input;
  int candidates = 0;  // candidates of the first Find
  Json address;        // the Retrieve row (Line1, City, ProvinceCode, PostalCode, …);
                       // null if none
};

class AddressCompleteClient {
 public:
  static Result<std::unique_ptr<AddressCompleteClient>> create(AddressCompleteOptions options);

  Result<std::vector<AddressCandidate>> find(const std::string& search_term,
                                             const std::string& last_id = {});
  // The Retrieve rows of an address Id (the service may answer one per
  // language); the one in the preferred language first.
  Result<std::vector<Json>> retrieve(const std::string& id);
  // Find, following containers, then Retrieve of the best candidate.
  Result<AddressValidation> validate(const std::string& address);

 private:
  AddressCompleteClient() = default;
  Result<Json::Array> call(std::string_view method_path, const QueryParams& params);

  AddressCompleteOptions options_;
  Url base_;
  std::unique_ptr<RestClient> client_;
};

}  // namespace civicbus::connect::detail
