//! The world in the guest mode: endpoints that are QEMU guests on `serve`'s VF sockets, booted,
//! commanded and reattached from here, their frames arriving in real time.

use super::*;

impl World {
    /// Makes the VF endpoints the mode names QEMU guests (before any endpoint is added).
    pub fn set_guest_mode(&mut self, mode: GuestMode) {
        self.guest_mode = Some(mode);
    }

    /// Whether any endpoint is a QEMU guest: answers then come in real time, from outside.
    pub fn has_guests(&self) -> bool {
        self.endpoints.iter().any(|e| e.guest)
    }

    /// Boots every guest endpoint's QEMU at once, then waits for each to be up (its igbvf
    /// netdev up with its IP, carrier on). The first guest that fails ends the boot phase with
    /// its error; the others are killed when the world drops.
    pub fn boot_guests(&mut self, scenario: &str) -> Result<(), GuestError> {
        let Some(mode) = &self.guest_mode else {
            return Ok(());
        };
        self.guest_scenario = scenario.to_string();
        let mut booting = Vec::new();
        for (idx, ep) in self.endpoints.iter().enumerate() {
            if !ep.guest {
                continue;
            }
            let socket = (mode.sockets)(ep.port).ok_or_else(|| GuestError::Boot {
                guest: ep.name.clone(),
                secs: 0.0,
                why: format!("no vfio-user socket for {}", ep.port),
                tail: String::new(),
            })?;
            let ip = ep.stack.ip;
            let card = self
                .nic(ep.port.nic)
                .map_or(model::Card::I82576, |n| n.card());
            booting.push((
                idx,
                Booting::spawn(scenario, &ep.name, &socket, ip, card, mode)?,
            ));
        }
        let names: Vec<&str> = booting
            .iter()
            .map(|(idx, _)| self.endpoints[*idx].name.as_str())
            .collect();
        if !names.is_empty() {
            mode.progress(&format!("{scenario}: booting {}", names.join(", ")));
        }
        let started = Instant::now();
        let until = started + mode.boot_timeout;
        let mut up = Vec::new();
        for (idx, b) in booting {
            let vm = b.wait(until)?;
            if let Some(mac) = vm.mac {
                self.endpoints[idx].stack.mac = mac;
            }
            mode.progress(&format!(
                "{scenario}: {} up ({}) in {:.1} s",
                self.endpoints[idx].name,
                vm.kernel.as_deref().unwrap_or("?"),
                started.elapsed().as_secs_f64()
            ));
            self.endpoints[idx].vm = Some(Box::new(vm));
            up.push(idx);
        }
        for idx in up {
            let modules = self.probe_brought_modules(idx)?;
            self.guest_modules.insert(idx, modules);
        }
        Ok(())
    }

    /// What endpoint `idx`'s guest has of the modules the user brought: loaded or not, the
    /// checksum of its file, the kernel's taint flags for it.
    fn probe_brought_modules(&mut self, idx: usize) -> Result<Vec<GuestModule>, GuestError> {
        let brought = match self.guest_mode.as_ref().and_then(|m| m.build.as_ref()) {
            Some(build) if !build.modules.is_empty() => build.modules.clone(),
            _ => return Ok(Vec::new()),
        };
        let mut script = String::new();
        for m in &brought {
            script += &format!(
                "echo \"@ {name} $(test -d /sys/module/{name} && echo 1 || echo 0) \
                 $(sha256sum {path} 2>/dev/null | cut -d' ' -f1) -$(cat /sys/module/{name}/taint 2>/dev/null)\"\n",
                name = m.name,
                path = m.guest
            );
        }
        let timeout = self.command_timeout();
        let answer = self.guest_command(idx, &script, timeout)?;
        Ok(brought
            .iter()
            .map(|m| {
                let line = answer
                    .output
                    .lines()
                    .find(|l| l.split_whitespace().nth(1) == Some(m.name.as_str()));
                let words: Vec<&str> = line.map_or(Vec::new(), |l| l.split_whitespace().collect());
                let sum = words.get(3).filter(|w| !w.starts_with('-'));
                GuestModule {
                    name: m.name.clone(),
                    path: m.guest.clone(),
                    loaded: words.get(2) == Some(&"1"),
                    sha256: sum.map(|w| w.to_string()),
                    expected_sha256: m.sha256.clone(),
                    taint: words
                        .last()
                        .and_then(|w| w.strip_prefix('-'))
                        .unwrap_or("")
                        .to_string(),
                }
            })
            .collect())
    }

    /// The run's QEMU guests: what each booted, its console's last lines.
    pub fn guest_infos(&self) -> Vec<GuestInfo> {
        self.endpoints
            .iter()
            .enumerate()
            .filter_map(|(idx, ep)| {
                let vm = ep.vm.as_ref()?;
                Some(GuestInfo {
                    endpoint: ep.name.clone(),
                    kernel: vm.kernel.clone(),
                    modules: self.guest_modules.get(&idx).cloned().unwrap_or_default(),
                    log: vm.log_path().display().to_string(),
                    console_tail: vm.console_tail(),
                })
            })
            .collect()
    }

    /// Reports a line of progress (the guest mode, on a terminal).
    pub fn progress(&self, line: &str) {
        if let Some(mode) = &self.guest_mode {
            mode.progress(line);
        }
    }

    /// Guest mode: kills endpoint `idx`'s QEMU (SIGKILL: its VF's client gone without a word,
    /// which `serve` answers by detaching and resetting the function), then boots a fresh guest
    /// on the same VF socket and waits until its igbvf is up.
    pub fn reattach_guest(&mut self, idx: usize) -> Result<(), GuestError> {
        let name = self.endpoints[idx].name.clone();
        let Some(mode) = &self.guest_mode else {
            return Err(GuestError::Gone {
                guest: name,
                tail: "not in the guest mode".into(),
            });
        };
        if let Some(vm) = self.endpoints[idx].vm.take() {
            vm.kill()?;
        }
        let ep = &self.endpoints[idx];
        let socket = (mode.sockets)(ep.port).ok_or_else(|| GuestError::Boot {
            guest: name.clone(),
            secs: 0.0,
            why: format!("no vfio-user socket for {}", ep.port),
            tail: String::new(),
        })?;
        let card = self
            .nic(ep.port.nic)
            .map_or(model::Card::I82576, |n| n.card());
        let booting = Booting::spawn(
            &self.guest_scenario,
            &name,
            &socket,
            ep.stack.ip,
            card,
            mode,
        )?;
        let vm = booting.wait(Instant::now() + mode.boot_timeout)?;
        // A fresh VM: a fresh stack, with the MAC its igbvf came up with.
        let ep = &mut self.endpoints[idx];
        ep.stack = HostStack::new(vm.mac.unwrap_or(MacAddr::ZERO), ep.stack.ip, ep.stack.vlan);
        ep.vm = Some(Box::new(vm));
        self.pump(VecDeque::new());
        let modules = self.probe_brought_modules(idx)?;
        self.guest_modules.insert(idx, modules);
        Ok(())
    }

    /// Where the card's threads log (guest mode), if the mode says.
    pub fn log_tap(&self) -> Option<&crate::logs::LogTap> {
        self.guest_mode.as_ref().and_then(|m| m.log_tap.as_ref())
    }

    /// The helper the guests run for `send` and `traffic` ([`crate::guest_send`]), or why
    /// there is none.
    pub fn guest_helper(&self) -> Result<(), String> {
        match &self.guest_mode {
            Some(m) => m.helper.as_ref().map(|_| ()).map_err(Clone::clone),
            None => Err("not in the guest mode".into()),
        }
    }

    /// The default timeout of a command in a guest.
    pub fn command_timeout(&self) -> std::time::Duration {
        self.guest_mode
            .as_ref()
            .map_or(crate::guests::DEFAULT_COMMAND_TIMEOUT, |m| {
                m.command_timeout
            })
    }

    /// Runs `command` in endpoint `idx`'s guest, answering what the in-process endpoints
    /// receive meanwhile (the guest's frames arrive in real time).
    pub fn guest_command(
        &mut self,
        idx: usize,
        command: &str,
        timeout: std::time::Duration,
    ) -> Result<Answer, GuestError> {
        let pending = self.guest_start(idx, command, timeout)?;
        self.guest_finish(idx, &pending)
    }

    /// Sends `command` to endpoint `idx`'s guest without waiting for its answer
    /// ([`World::guest_finish`] waits), so that several guests run commands at once.
    pub fn guest_start(
        &mut self,
        idx: usize,
        command: &str,
        timeout: std::time::Duration,
    ) -> Result<Pending, GuestError> {
        let name = self.endpoints[idx].name.clone();
        let Some(vm) = self.endpoints[idx].vm.as_mut() else {
            return Err(GuestError::Gone {
                guest: name,
                tail: "not booted".into(),
            });
        };
        vm.start(command, timeout)
    }

    /// Waits for the answer to `pending` in endpoint `idx`'s guest, answering what the
    /// in-process endpoints receive meanwhile.
    pub fn guest_finish(&mut self, idx: usize, pending: &Pending) -> Result<Answer, GuestError> {
        let name = self.endpoints[idx].name.clone();
        loop {
            self.pump(VecDeque::new());
            let Some(vm) = self.endpoints[idx].vm.as_mut() else {
                return Err(GuestError::Gone {
                    guest: name,
                    tail: "not booted".into(),
                });
            };
            if let Some(a) = vm.try_answer(pending)? {
                self.pump(VecDeque::new());
                return Ok(a);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The answer to `pending` in endpoint `idx`'s guest if it came, without waiting.
    pub fn guest_poll(
        &mut self,
        idx: usize,
        pending: &Pending,
    ) -> Result<Option<Answer>, GuestError> {
        let name = self.endpoints[idx].name.clone();
        let Some(vm) = self.endpoints[idx].vm.as_mut() else {
            return Err(GuestError::Gone {
                guest: name,
                tail: "not booted".into(),
            });
        };
        vm.try_answer(pending)
    }

    /// Carries frames (answers of the in-process endpoints to what guests send) until `done`
    /// holds or `within` has passed; whether `done` held.
    pub fn pump_until(
        &mut self,
        within: std::time::Duration,
        done: impl Fn(&World) -> bool,
    ) -> bool {
        let until = Instant::now() + within;
        loop {
            self.pump(VecDeque::new());
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
