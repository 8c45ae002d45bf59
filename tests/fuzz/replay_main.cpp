// A stand-in for libFuzzer's driver, so that every fuzz target's corpus replays as an ordinary
// test in builds without -fsanitize=fuzzer (gcc, the default). It runs LLVMFuzzerTestOneInput
// once over every file given on the command line, or over every file of a directory given
// there (not recursing, in name order, so runs are reproducible):
//
//   fuzz_json tests/fuzz/corpus/json            # what ctest runs
//   fuzz_json crash-3f2a...                     # one input, e.g. a crash from a fuzzing run
//
// Each input is copied into a heap buffer of exactly its size, as libFuzzer does, so that a
// read past the end is caught by ASan in a sanitizer build. A target reports a bug by
// crashing or aborting; the name of the input that was running is printed before it starts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

bool read_file(const fs::path& path, std::vector<char>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <corpus directory or input file>...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<fs::path> files;
      for (const fs::directory_entry& entry : fs::directory_iterator(arg, ec)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      if (ec) {
        std::fprintf(stderr, "cannot list %s: %s\n", argv[i], ec.message().c_str());
        return 2;
      }
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "%s is neither a directory nor a file\n", argv[i]);
      return 2;
    }
  }
  // An empty corpus would make the test pass while checking nothing.
  if (inputs.empty()) {
    std::fprintf(stderr, "no inputs found in the given paths\n");
    return 2;
  }

  std::vector<char> bytes;
  for (const fs::path& path : inputs) {
    if (!read_file(path, bytes)) {
      std::fprintf(stderr, "cannot read %s\n", path.c_str());
      return 2;
    }
    std::printf("Running: %s (%zu bytes)\n", path.c_str(), bytes.size());
    std::fflush(stdout);
    // Exactly sized, so that reading one byte too far is a heap overflow under ASan.
    auto copy = std::make_unique<std::uint8_t[]>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), copy.get());
    LLVMFuzzerTestOneInput(copy.get(), bytes.size());
  }
  std::printf("Executed %zu inputs\n", inputs.size());
  return 0;
}
