//! Images: pull (with registry credentials), ensure present, tag, push.

use bollard::query_parameters::{
    CreateImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use slipway_core::credentials::RegistryCredential;

use super::{is_not_found, message, registry_auth, Engine};
use crate::RunnerError;

impl Engine {
    /// Tags `image` as `repo:tag`.
    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<(), RunnerError> {
        self.docker
            .tag_image(
                image,
                Some(TagImageOptionsBuilder::new().repo(repo).tag(tag).build()),
            )
            .await
            .map_err(|e| RunnerError::Engine(message(e)))
    }

    /// Pushes `repo:tag` with `credential` when given.
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's message.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<(), RunnerError> {
        let mut s = self.docker.push_image(
            repo,
            Some(PushImageOptionsBuilder::new().tag(tag).build()),
            credential.map(registry_auth),
        );
        while let Some(item) = s.next().await {
            item.map_err(|e| RunnerError::Engine(message(e)))?;
        }
        Ok(())
    }

    /// Makes sure `image` is present, pulling it when absent, with
    /// `credential` when given (sent as the engine's `X-Registry-Auth`).
    ///
    /// Errors: [`RunnerError::ImageUnavailable`] with the engine's message
    /// when the pull fails (unknown image, refused credentials, …).
    pub async fn ensure_image(
        &self,
        image: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<(), RunnerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => self.pull(image, credential).await,
            Err(e) => Err(RunnerError::Engine(e.to_string())),
        }
    }

    /// Pulls `image` (also when present, to see a newer digest), with
    /// `credential` when given.
    ///
    /// Errors: [`RunnerError::ImageUnavailable`] with the engine's message.
    pub async fn pull(
        &self,
        image: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<(), RunnerError> {
        let mut stream = self.docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            credential.map(registry_auth),
        );
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                let message = match e {
                    // The engine's own words ("… unauthorized: authentication required").
                    bollard::errors::Error::DockerStreamError { error } => error,
                    e => e.to_string(),
                };
                return Err(RunnerError::ImageUnavailable {
                    image: image.to_string(),
                    message,
                });
            }
        }
        Ok(())
    }
}
