//! A function with only a config space, for the server's and the pool's unit tests.

use super::{FunctionContext, FunctionInfo, PciFunction, RegionError};

/// Every config-space byte reads as `fill`; `shared`: it needs shared guest memory.
pub(super) struct ConfigOnly {
    pub fill: u8,
    pub shared: bool,
}

impl ConfigOnly {
    pub fn new(fill: u8) -> Self {
        ConfigOnly {
            fill,
            shared: false,
        }
    }
}

impl PciFunction for ConfigOnly {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            needs_shared_memory: self.shared,
            ..FunctionInfo::default()
        }
    }
    fn config_read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.fill);
    }
    fn config_write(&mut self, _offset: u64, _data: &[u8]) {}
    fn region_read(&mut self, _: u32, _: u64, _: &mut [u8]) -> Result<(), RegionError> {
        Err(RegionError::NotSupported)
    }
    fn region_write(&mut self, _: u32, _: u64, _: &[u8]) -> Result<(), RegionError> {
        Err(RegionError::NotSupported)
    }
    fn reset(&mut self) {}
    fn attach(&mut self, _: FunctionContext) {}
    fn detach(&mut self) {}
}
