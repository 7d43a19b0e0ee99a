-- Azure's hyperVGeneration of each stored image: V1 (BIOS, MBR) or V2 (UEFI,
-- an EFI System Partition). Every image stored before generation 2 base
-- images existed is a BIOS one.
ALTER TABLE vm_images ADD COLUMN hyper_v_generation TEXT NOT NULL DEFAULT 'V1';
