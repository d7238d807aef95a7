{
  description = "Gantry: control-plane backend for multi-tenant Kubernetes platforms (REST API + workers, one binary)";

  # No flake.lock is committed yet: the first `nix build` / `nix develop` writes one (commit it
  # to pin nixpkgs). nixos-unstable because the locked crates need a recent rustc (see minRust).
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs =
    {
      self,
      nixpkgs,
      flake-utils,
    }:
    flake-utils.lib.eachDefaultSystem (
      system:
      let
        pkgs = nixpkgs.legacyPackages.${system};
        lib = pkgs.lib;
        cargoToml = lib.importTOML ./Cargo.toml;

        # Cargo.lock pins sqlx 0.9 / sea-query-sqlx 0.9, which declare rust-version 1.94
        # (higher than Cargo.toml's own rust-version). Fail with a clear message instead of a
        # compile error on an older nixpkgs.
        minRust = "1.94";
        checkedRust =
          pkg:
          if lib.versionAtLeast pkgs.rustc.version minRust then
            pkg
          else
            throw "gantry needs rustc >= ${minRust}; this nixpkgs has ${pkgs.rustc.version} (run `nix flake update`)";
        rustPlatform = checkedRust pkgs.rustPlatform;

        gantry = rustPlatform.buildRustPackage {
          pname = "gantry";
          version = cargoToml.package.version;

          # Only the workspace: editing README, sdk/ or grafana/ does not rebuild the binary.
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./src
              ./migration
            ];
          };

          # Every dependency comes from crates.io (no git sources), so no outputHashes.
          cargoLock.lockFile = ./Cargo.lock;

          # aws-lc-sys (rustls, jsonwebtoken) builds AWS-LC with the C compiler; cmake and perl
          # cover its CMake fallback. The cmake hook must not try to configure the crate itself.
          nativeBuildInputs = [
            pkgs.pkg-config
            pkgs.cmake
            pkgs.perl
            pkgs.makeWrapper
          ];
          dontUseCmakeConfigure = true;

          # The codegen runner delivers to Git with the git CLI (and ssh for ssh remotes): put
          # both on the binary's PATH, so `nix run` and the image work without a system git.
          postInstall = ''
            wrapProgram $out/bin/gantry \
              --prefix PATH : ${
                lib.makeBinPath [
                  pkgs.gitMinimal
                  pkgs.openssh
                ]
              }
          '';

          # The test suite starts Postgres/Redis and servers on loopback: run it with .ci/run.
          doCheck = false;

          meta = {
            description = cargoToml.package.description;
            license = lib.licenses.asl20;
            mainProgram = "gantry";
          };
        };

        # A non-root user for the image (uid/gid 10001, like the Dockerfile).
        passwd = pkgs.writeTextDir "etc/passwd" ''
          root:x:0:0:root:/root:/sbin/nologin
          gantry:x:10001:10001:gantry:/var/lib/gantry:/sbin/nologin
        '';
        group = pkgs.writeTextDir "etc/group" ''
          root:x:0:
          gantry:x:10001:
        '';

        # `nix build .#docker && docker load < result`, then use image gantry:latest in place of
        # the Dockerfile's (curl is included for the compose health checks).
        dockerImage = pkgs.dockerTools.buildLayeredImage {
          name = "gantry";
          tag = "latest";
          contents = [
            gantry
            pkgs.cacert
            pkgs.curlMinimal
            passwd
            group
          ];
          fakeRootCommands = ''
            mkdir -p ./var/lib/gantry ./tmp
            chown 10001:10001 ./var/lib/gantry
            chmod 0750 ./var/lib/gantry
            chmod 1777 ./tmp
          '';
          config = {
            User = "10001:10001";
            WorkingDir = "/var/lib/gantry";
            Entrypoint = [ "${gantry}/bin/gantry" ];
            Cmd = [
              "--server"
              "--all-workers"
            ];
            ExposedPorts = {
              "8000/tcp" = { };
            };
            Env = [
              "ROCKET_ADDRESS=0.0.0.0"
              "ROCKET_PORT=8000"
              "GANTRY_DATA_DIR=/var/lib/gantry"
              "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
            ];
          };
        };

        # Node 20 reached end of life in April 2026 and leaves nixpkgs; 22 is the current LTS.
        nodejs = pkgs.nodejs_22;

        # `nix run .#generateTypescriptClient` from the repository root: regenerates
        # openapi/openapi.json from the binary, then the TypeScript SDK from it.
        generateTypescriptClient = pkgs.writeShellApplication {
          name = "gantry-generate-typescript-client";
          runtimeInputs = [
            gantry
            nodejs
          ];
          text = ''
            if [ ! -f Cargo.toml ] || [ ! -d sdk/typescript ]; then
              echo "run this from the Gantry repository root (it needs ./sdk/typescript)" >&2
              exit 1
            fi
            mkdir -p openapi
            tmp="$(mktemp)"
            trap 'rm -f "$tmp"' EXIT
            gantry print-openapi > "$tmp"
            cat "$tmp" > openapi/openapi.json
            npm --prefix sdk/typescript ci
            npm --prefix sdk/typescript run generate
          '';
        };
      in
      {
        packages = {
          default = gantry;
          inherit gantry;
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          docker = dockerImage;
        };

        apps = {
          default = {
            type = "app";
            program = lib.getExe gantry;
          };
          generateTypescriptClient = {
            type = "app";
            program = lib.getExe generateTypescriptClient;
          };
        };

        checks = {
          inherit gantry;
        };

        devShells.default = pkgs.mkShell {
          packages = [
            (checkedRust pkgs.rustc)
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.cargo-nextest
            pkgs.pkg-config
            pkgs.cmake
            pkgs.perl
            pkgs.sqlite
            pkgs.postgresql # psql, pg_isready, and a server for GANTRY_TEST_DATABASE_URL
            pkgs.redis
            nodejs
            pkgs.prometheus
            pkgs.prometheus.cli # promtool
            pkgs.jq
            pkgs.curl
          ];
          RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
        };
      }
    );
}
