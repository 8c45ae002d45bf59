#!/usr/bin/env bash
# The packaging tests of tests/package/CMakeLists.txt. One step per call:
#   install       cmake --install <build-dir> --prefix <stage> (a fresh stage each time)
#   find_package  configure, build and run consumer/ against <stage> with find_package(civicbus)
#   pkg_config    build consumer/main.cpp with `pkg-config --cflags --libs civicbus` and run it
# Each prints what it runs; a failure names the step and exits non-zero.
set -euo pipefail

step=$1
shift
build_dir= stage= work= consumer= cxx=c++ build_type= launcher= version= shared=0 sanitize=
for arg in "$@"; do
  value=${arg#*=}
  case "$arg" in
    --build-dir=*) build_dir=$value ;;
    --stage=*) stage=$value ;;
    --work=*) work=$value ;;
    --consumer=*) consumer=$value ;;
    --cxx=*) cxx=$value ;;
    --build-type=*) build_type=$value ;;
    --launcher=*) launcher=$value ;;
    --version=*) version=$value ;;
    --shared=*) shared=$value ;;
    --sanitize=*) sanitize=$value ;;
    *) echo "consumer_test.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

fail() {
  echo "package test ($step): $*" >&2
  exit 1
}
run() {
  echo "+ $*"
  "$@"
}

# The consumer may run where the library was built with sanitizers; its own leaks are its
# bugs, but the report must not be lost in the output.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

case "$step" in
  install)
    if [ ! -e "$build_dir/civicbus" ] ||
       { [ ! -e "$build_dir/libcivicbus.a" ] && [ ! -e "$build_dir/libcivicbus.so" ]; }; then
      fail "build the civicbus and civicbus_cli targets in $build_dir first (cmake --build $build_dir)"
    fi
    rm -rf "$stage"
    run cmake --install "$build_dir" --prefix "$stage" >"$build_dir/tests/package/install.log" ||
      { cat "$build_dir/tests/package/install.log"; fail "cmake --install failed"; }
    echo "installed $(wc -l <"$build_dir/install_manifest.txt") files into $stage"
    for f in include/civicbus/version.hpp include/civicbus/export.hpp \
             include/civicbus/node/node.hpp lib/cmake/civicbus/civicbusConfig.cmake \
             lib/cmake/civicbus/civicbusConfigVersion.cmake lib/cmake/civicbus/FindMbedTLS.cmake \
             lib/pkgconfig/civicbus.pc bin/civicbus; do
      [ -e "$stage/$f" ] || fail "the install has no $f"
    done
    # The installed CLI runs and reports the project's version.
    out=$(LD_LIBRARY_PATH="$stage/lib" "$stage/bin/civicbus" --version) ||
      fail "the installed CLI failed: $out"
    echo "$out"
    [ "$out" = "civicbus $version" ] || fail "the installed CLI says '$out', expected 'civicbus $version'"
    ;;

  find_package)
    dir="$work/find_package"
    rm -rf "$dir"
    args=(-S "$consumer" -B "$dir" -G Ninja -DCMAKE_PREFIX_PATH="$stage"
          -DCMAKE_CXX_COMPILER="$cxx" -DCIVICBUS_EXPECTED_VERSION="$version")
    [ -n "$build_type" ] && args+=(-DCMAKE_BUILD_TYPE="$build_type")
    [ -n "$launcher" ] && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
    run cmake "${args[@]}" || fail "configuring the consumer against $stage failed"
    run cmake --build "$dir" || fail "building the consumer failed"
    run "$dir/civicbus_consumer" "$version" "$work/find_package/data" ||
      fail "the consumer failed"
    ;;

  pkg_config)
    dir="$work/pkg_config"
    rm -rf "$dir"
    mkdir -p "$dir"
    export PKG_CONFIG_PATH="$stage/lib/pkgconfig"
    pc_version=$(pkg-config --modversion civicbus) || fail "pkg-config cannot find civicbus.pc"
    [ "$pc_version" = "$version" ] || fail "civicbus.pc has version $pc_version, expected $version"
    pc_args=(--cflags --libs)
    # A static libcivicbus needs its dependencies on the link line: Requires.private and
    # Libs.private, which only --static prints.
    [ "$shared" = 1 ] || pc_args+=(--static)
    # shellcheck disable=SC2207
    flags=($(pkg-config "${pc_args[@]}" civicbus)) || fail "pkg-config ${pc_args[*]} civicbus failed"
    opt=(-O1 -g)
    [ -n "$sanitize" ] && opt+=(-fsanitize="$sanitize")
    run $launcher "$cxx" -std=c++20 "${opt[@]}" "$consumer/main.cpp" -o "$dir/civicbus_consumer" \
      "${flags[@]}" || fail "compiling the consumer with pkg-config's flags failed"
    # The staged prefix is not on the loader's path (a shared libcivicbus is found through it).
    LD_LIBRARY_PATH="$stage/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      run "$dir/civicbus_consumer" "$version" "$dir/data" || fail "the consumer failed"
    ;;

  *)
    echo "usage: consumer_test.sh install|find_package|pkg_config --build-dir ... (see tests/package/CMakeLists.txt)" >&2
    exit 2
    ;;
esac
